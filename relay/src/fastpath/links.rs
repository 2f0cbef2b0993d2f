//! The program's attachments to the input interfaces (tcx links or clsact filters, one kind
//! per daemon): attached where a rule needs one, tried again at every plan where attaching
//! failed (warning once), attached anew where the kernel dropped one with its interface, and
//! dropped where no rule uses the input any more.

use std::collections::{BTreeMap, HashMap};
use std::os::fd::{BorrowedFd, OwnedFd};

use super::attach::{self, AttachError};
use super::clsact::{self, ClsactFilter};
use super::owner;
use super::plan::InputLink;
use super::resolve;
use super::AttachMode;

/// The attachments of one loaded program, by input interface index.
pub(super) struct Links {
    mode: AttachMode,
    /// The program's id: its own filters are not another daemon's.
    prog_id: u32,
    /// The kernel has tcx: a clsact daemon looks there for other daemons too.
    tcx_available: bool,
    links: BTreeMap<u32, Result<Attachment, LinkError>>,
    /// The pid of the process holding another mcrd's program on an input, by program id
    /// (found once per program: it takes a walk over /proc).
    owners: HashMap<u32, Option<u32>>,
}

/// The program on one input; dropping it detaches the program.
enum Attachment {
    /// A tcx link: the kernel detaches the program when its last descriptor closes.
    Tcx(OwnedFd),
    /// A clsact filter, which mcrd deletes itself.
    Clsact(ClsactFilter),
}

impl Attachment {
    /// Whether the program still runs on the input (see [`attach::link_attached`] and
    /// [`ClsactFilter::attached`]).
    fn attached(&self) -> bool {
        match self {
            Attachment::Tcx(link) => attach::link_attached(link),
            Attachment::Clsact(filter) => filter.attached(),
        }
    }

    /// Lets go of an attachment the kernel removed with its interface.
    fn forget(self) {
        if let Attachment::Clsact(filter) = self {
            filter.forget();
        }
    }
}

/// Why an input has no attachment of ours.
struct LinkError {
    why: String,
    /// Another mcrd's fast path holds the input.
    taken: bool,
}

impl Links {
    pub(super) fn new(mode: AttachMode, prog_id: u32, tcx_available: bool) -> Self {
        Self {
            mode,
            prog_id,
            tcx_available,
            links: BTreeMap::new(),
            owners: HashMap::new(),
        }
    }

    /// Every input has an attachment of ours that the kernel still holds (none failed, was
    /// refused or went with its interface).
    pub(super) fn all_live(&self) -> bool {
        self.links
            .values()
            .all(|l| l.as_ref().is_ok_and(Attachment::attached))
    }

    /// Attaches `program` to each of `inputs` (index, name) that has no live attachment, and
    /// says for each input how it stands. The reasons inputs could not be attached are added
    /// to `errors`.
    pub(super) fn attach(
        &mut self,
        program: BorrowedFd<'_>,
        inputs: &[(u32, String)],
        errors: &mut Vec<String>,
    ) -> BTreeMap<u32, InputLink> {
        for (ifindex, name) in inputs {
            let failed_before = match self.links.get(ifindex) {
                // An attachment whose interface was deleted (and maybe created again under
                // the same index) attaches nothing any more: attach anew.
                Some(Ok(a)) if !a.attached() => {
                    tracing::warn!(
                        interface = %name,
                        "fast path detached by the kernel (the interface was deleted); attaching again"
                    );
                    if let Some(Ok(gone)) = self.links.remove(ifindex) {
                        gone.forget();
                    }
                    false
                }
                Some(Ok(_)) => continue,
                Some(Err(_)) => true,
                None => false,
            };
            let link = self.attach_one(program, *ifindex, name);
            match &link {
                Ok(_) => tracing::info!(
                    interface = %name,
                    "fast path attached ({} ingress)",
                    self.mode.name()
                ),
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
    ) -> Result<Attachment, LinkError> {
        let failed = |why: String| LinkError { why, taken: false };
        match resolve::link(name) {
            Ok(l) if l.ethernet => {}
            Ok(_) => return Err(failed(format!("input {name} is not an Ethernet interface"))),
            Err(e) => return Err(failed(format!("input {name}: {e}"))),
        }
        // Another daemon's program on the other hook, or a dead one's clsact filter; the
        // hook we attach to is checked by the attach itself, race-free.
        let other_hook_tcx = self.mode == AttachMode::Clsact && self.tcx_available;
        let attached = attach::claim(ifindex, name, self.prog_id, other_hook_tcx).and_then(|()| {
            match self.mode {
                AttachMode::Tcx => attach::attach_tcx(program, ifindex, name).map(Attachment::Tcx),
                AttachMode::Clsact => {
                    clsact::attach(program, self.prog_id, ifindex, name).map(Attachment::Clsact)
                }
            }
        });
        match attached {
            Ok(a) => Ok(a),
            Err(AttachError::Taken {
                interface,
                hook,
                id,
                ..
            }) => {
                let owner = *self.owners.entry(id).or_insert_with(|| owner::holder(id));
                Err(LinkError {
                    why: AttachError::Taken {
                        interface,
                        hook,
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

    /// The inputs with an attachment (or a failed attempt) that none of `inputs` names.
    pub(super) fn unused(&self, inputs: &[(u32, String)]) -> Vec<u32> {
        self.links
            .keys()
            .filter(|i| !inputs.iter().any(|(j, _)| j == *i))
            .copied()
            .collect()
    }

    /// Detaches from `ifindex` (dropping the attachment detaches the program).
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
