//! Run records in, regression reports out (see README).
