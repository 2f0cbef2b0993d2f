//! The program's links to the input interfaces: attached where a rule needs one, tried again
//! at every plan where attaching failed (warning once), attached anew where the kernel
//! dropped the link with its interface, and dropped where no rule uses the input any more.

use std::collections::{BTreeMap, HashMap};
use std::os::fd::{BorrowedFd, OwnedFd};

use super::attach::{self, AttachError};
use super::plan::InputLink;
use super::resolve;

/// The links of one loaded program, by input interface index.
#[derive(Default)]
pub(super) struct Links {
    links: BTreeMap<u32, Result<OwnedFd, LinkError>>,
    /// The pid of the process holding another mcrd's program on an input, by program id
    /// (found once per program: it takes a walk over /proc).
    owners: HashMap<u32, Option<u32>>,
}

/// Why an input has no link of ours.
struct LinkError {
    why: String,
    /// Another mcrd's fast path holds the input.
    taken: bool,
}

impl Links {
    /// Attaches `program` to each of `inputs` (index, name) that has no live link, and says
    /// for each input how it stands. The reasons inputs could not be attached are added to
    /// `errors`.
    pub(super) fn attach(
        &mut self,
        program: BorrowedFd<'_>,
        inputs: &[(u32, String)],
        errors: &mut Vec<String>,
    ) -> BTreeMap<u32, InputLink> {
        for (ifindex, name) in inputs {
            let failed_before = match self.links.get(ifindex) {
                // A link whose interface was deleted (and maybe created again under the same
                // index) attaches nothing any more: attach anew.
                Some(Ok(link)) if !attach::link_attached(link) => {
                    tracing::warn!(
                        interface = %name,
                        "fast path detached by the kernel (the interface was deleted); attaching again"
                    );
                    false
                }
                Some(Ok(_)) => continue,
                Some(Err(_)) => true,
                None => false,
            };
            let link = self.attach_one(program, *ifindex, name);
            match &link {
                Ok(_) => tracing::info!(interface = %name, "fast path attached (tcx ingress)"),
                Err(e) => {
                    if !failed_before && e.taken {
                        tracing::warn!(
                            "{}: its rules stand by, forwarded by neither path of this daemon, \
                             until that one detaches (tried again every second)",
                            e.why
                        );
                    } else if !failed_before {
                        tracing::warn!("fast path not attached: {}", e.why);
                    }
                    errors.push(e.why.clone());
                }
            }
            self.links.insert(*ifindex, link);
        }
        self.links
            .iter()
            .map(|(i, l)| {
                let state = match l {
                    Ok(_) => InputLink::Attached,
                    Err(e) if e.taken => InputLink::Taken(e.why.clone()),
                    Err(e) => InputLink::Failed(e.why.clone()),
                };
                (*i, state)
            })
            .collect()
    }

    fn attach_one(
        &mut self,
        program: BorrowedFd<'_>,
        ifindex: u32,
        name: &str,
    ) -> Result<OwnedFd, LinkError> {
        let failed = |why: String| LinkError { why, taken: false };
        match resolve::link(name) {
            Ok(l) if l.ethernet => {}
            Ok(_) => return Err(failed(format!("input {name} is not an Ethernet interface"))),
            Err(e) => return Err(failed(format!("input {name}: {e}"))),
        }
        match attach::attach_tcx(program, ifindex, name) {
            Ok(fd) => Ok(fd),
            Err(AttachError::Taken { interface, id, .. }) => {
                let owner = *self
                    .owners
                    .entry(id)
                    .or_insert_with(|| attach::link_owner(id));
                Err(LinkError {
                    why: AttachError::Taken {
                        interface,
                        id,
                        owner,
                    }
                    .to_string(),
                    taken: true,
                })
            }
            Err(e) => Err(failed(e.to_string())),
        }
    }

    /// The inputs with a link (or a failed attempt) that none of `inputs` names.
    pub(super) fn unused(&self, inputs: &[(u32, String)]) -> Vec<u32> {
        self.links
            .keys()
            .filter(|i| !inputs.iter().any(|(j, _)| j == *i))
            .copied()
            .collect()
    }

    /// Detaches from `ifindex` (closing the link detaches the program).
    pub(super) fn drop_input(&mut self, ifindex: u32) {
        if let Some(Ok(_)) = self.links.remove(&ifindex) {
            tracing::info!(
                ifindex,
                "fast path detached: no rule uses this input any more"
            );
        }
    }

    /// Input interfaces the program is attached to.
    pub(super) fn attached(&self) -> Vec<u32> {
        self.links
            .iter()
            .filter(|(_, l)| l.is_ok())
            .map(|(i, _)| *i)
            .collect()
    }

    /// Detaches from every interface.
    pub(super) fn clear(&mut self) {
        self.links.clear();
    }
}
