//! Users and groups by name, from the system's databases (NSS).

use std::ffi::CString;

/// The id of the group called `name`, `None` if there is none.
///
/// `getgrnam` returns static storage shared by every caller in the process; mcrd calls this
/// only at start-up, before its threads start.
pub fn group_id(name: &str) -> Option<u32> {
    let c = CString::new(name).ok()?;
    // SAFETY: getgrnam returns NULL or a pointer to static storage valid until the next
    // call; we read one field immediately (see the doc for why no other thread calls it).
    let gr = unsafe { libc::getgrnam(c.as_ptr()) };
    if gr.is_null() {
        return None;
    }
    // SAFETY: non-null result of getgrnam.
    Some(unsafe { (*gr).gr_gid })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_is_group_zero_and_unknown_names_are_none() {
        assert_eq!(group_id("root"), Some(0));
        assert_eq!(group_id("no-such-group-mcr"), None);
        assert_eq!(group_id("nul\0"), None);
    }
}
