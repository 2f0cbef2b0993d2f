//! Paced UDP/multicast sender and accounting receiver (see README).
