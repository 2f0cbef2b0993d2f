//! Checks of a configuration against the machine that is to run it: today, that the CPUs
//! `[dataplane] cpus` names are ones this process may run on.
//!
//! Kept out of [`super::parse`] so that what a file means does not depend on where it is read
//! (a file checked on a build host, the fuzzer, the tests). They run where the answer matters:
//! at the daemon's start, before any worker exists, and in `mcrctl config check`, which is run
//! on the machine the file is for. A reload needs none of them: it does not apply
//! `[dataplane]` (the daemon says a restart is needed).

use super::spec::DataplaneConfig;

/// A setting this machine cannot give.
#[derive(Debug, thiserror::Error)]
#[error("dataplane.{field}: {message}")]
pub struct MachineError {
    /// The key under `[dataplane]`.
    pub field: &'static str,
    pub message: String,
}

/// Checks `dataplane` against this machine.
pub fn check(dataplane: &DataplaneConfig) -> Result<(), MachineError> {
    check_cpus(&dataplane.cpus, &crate::sys::cpu::allowed_cpus())
}

/// Every listed CPU must be in `allowed`, the process's affinity mask. Without the mask,
/// refuse only what no CPU set can name (pinning to it would fail in `CPU_SET`).
fn check_cpus(cpus: &[u32], allowed: &std::io::Result<Vec<u32>>) -> Result<(), MachineError> {
    let permitted = |cpu: u32| match allowed {
        Ok(set) => set.contains(&cpu),
        Err(_) => (cpu as usize) < crate::sys::cpu::CPU_SET_CAPACITY,
    };
    let Some(cpu) = cpus.iter().copied().find(|&c| !permitted(c)) else {
        return Ok(());
    };
    let allowed = match allowed {
        Ok(set) => format!("{set:?}"),
        Err(e) => format!("unknown: {e}"),
    };
    Err(MachineError {
        field: "cpus",
        message: format!("CPU {cpu} is not one this process may run on (allowed: {allowed})"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cpu_outside_the_mask_is_named_with_the_mask() {
        let mask = Ok(vec![0, 1]);
        assert!(check_cpus(&[1, 0], &mask).is_ok());
        assert!(check_cpus(&[], &mask).is_ok());
        let e = check_cpus(&[0, 5], &mask).unwrap_err();
        assert_eq!(e.field, "cpus");
        assert_eq!(
            e.to_string(),
            "dataplane.cpus: CPU 5 is not one this process may run on (allowed: [0, 1])"
        );
    }

    #[test]
    fn without_the_mask_only_what_no_cpu_set_can_name_is_refused() {
        let unknown = Err(std::io::Error::from_raw_os_error(libc::EPERM));
        assert!(check_cpus(&[7, 1023], &unknown).is_ok());
        let e = check_cpus(&[1024], &unknown).unwrap_err();
        assert!(
            e.message.contains("CPU 1024") && e.message.contains("unknown"),
            "{e}"
        );
    }

    #[test]
    fn this_machine_gives_the_cpus_it_runs_on() {
        let mine = crate::sys::cpu::allowed_cpus().unwrap();
        let d = DataplaneConfig {
            cpus: mine.clone(),
            workers: mine.len() as u32,
            ..DataplaneConfig::default()
        };
        assert!(check(&d).is_ok());
        let d = DataplaneConfig {
            cpus: vec![4096],
            ..DataplaneConfig::default()
        };
        assert!(check(&d).unwrap_err().to_string().contains("CPU 4096"));
    }
}
