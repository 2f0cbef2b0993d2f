//! An interface's tc filters, listed over rtnetlink (what `tc filter show dev X ingress`
//! asks): libbpf can attach, query and delete a filter it knows the priority and handle of,
//! but cannot list them, and mcrd must find a filter a dead daemon left and tell whether a
//! clsact qdisc still has other filters before it deletes it.
//!
//! One `RTM_GETTFILTER` dump per call, on a socket of its own, in the caller's network
//! namespace. The reply parser is a pure function over the kernel's bytes, tested on them.

use std::io::{self, Read};
use std::time::Duration;

/// Kernel ABI (`linux/rtnetlink.h`): dump the filters of a parent.
const RTM_GETTFILTER: u16 = 46;
/// Kernel ABI (`linux/rtnetlink.h`): one filter of the dump.
const RTM_NEWTFILTER: u16 = 44;
/// Kernel ABI (`linux/netlink.h`).
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_DUMP: u16 = 0x300;
/// `struct nlmsghdr` and `struct tcmsg`.
const NLMSG_HDRLEN: usize = 16;
const TCMSG_LEN: usize = 20;
/// Kernel ABI (`linux/rtnetlink.h`, `TCA_*`): the filter's kind and its options (nested).
const TCA_KIND: u16 = 1;
const TCA_OPTIONS: u16 = 2;
/// Kernel ABI (`linux/pkt_cls.h`, `TCA_BPF_*`): a bpf filter's name (what its loader gave
/// it: libbpf writes `NAME:[ID]`, the program's name and id) and its program id.
const TCA_BPF_NAME: u16 = 7;
const TCA_BPF_ID: u16 = 11;
/// The flag bits of an attribute's type (`NLA_F_NESTED`, `NLA_F_NET_BYTEORDER`).
const NLA_TYPE_MASK: u16 = 0x3fff;
/// Kernel ABI (`linux/pkt_sched.h`): the clsact qdisc's ingress and egress parents.
const TC_H_CLSACT_INGRESS: u32 = 0xffff_fff2;
const TC_H_CLSACT_EGRESS: u32 = 0xffff_fff3;
/// How long a dump may take before the call gives up (the kernel answers at once).
const DUMP_TIMEOUT: Duration = Duration::from_secs(2);

/// One side of an interface's clsact qdisc.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parent {
    Ingress,
    Egress,
}

impl Parent {
    fn handle(self) -> u32 {
        match self {
            Parent::Ingress => TC_H_CLSACT_INGRESS,
            Parent::Egress => TC_H_CLSACT_EGRESS,
        }
    }
}

/// A filter as the dump shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcFilter {
    pub priority: u16,
    pub handle: u32,
    /// `bpf`, `u32`, `matchall`, ...
    pub kind: String,
    /// The program of a `bpf` filter.
    pub bpf_prog_id: Option<u32>,
    /// A `bpf` filter's name, as its loader gave it (readable without opening the program,
    /// which takes CAP_SYS_ADMIN).
    pub bpf_name: Option<String>,
}

/// The filters on `parent` of interface `ifindex` (none when it has no clsact qdisc, or no
/// such interface exists).
pub fn filters(ifindex: u32, parent: Parent) -> io::Result<Vec<TcFilter>> {
    let mut sock = crate::sys::netlink::route_socket(Some(DUMP_TIMEOUT))?;
    sock.send(&dump_request(ifindex, parent.handle()))?;
    let mut out = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = sock.read(&mut buf)?;
        if parse_dump(&buf[..n], &mut out)? {
            return Ok(out);
        }
    }
}

/// `RTM_GETTFILTER` with `NLM_F_DUMP` for one parent of one interface, all chains.
fn dump_request(ifindex: u32, parent: u32) -> Vec<u8> {
    let len = NLMSG_HDRLEN + TCMSG_LEN;
    let mut m = Vec::with_capacity(len);
    m.extend_from_slice(&(len as u32).to_ne_bytes());
    m.extend_from_slice(&RTM_GETTFILTER.to_ne_bytes());
    m.extend_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    m.extend_from_slice(&1u32.to_ne_bytes()); // sequence
    m.extend_from_slice(&0u32.to_ne_bytes()); // port: the kernel fills it in
                                              // struct tcmsg: family AF_UNSPEC and padding, ifindex, handle, parent, info.
    m.extend_from_slice(&[0u8; 4]);
    m.extend_from_slice(&(ifindex as i32).to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes());
    m.extend_from_slice(&parent.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes());
    m
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// Netlink messages and attributes start at 4-byte boundaries.
fn align4(n: usize) -> usize {
    (n + 3) & !3
}

fn malformed() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        "malformed rtnetlink filter dump",
    )
}

/// Adds the filters of one datagram of a dump reply to `out`; true once the dump is done.
fn parse_dump(mut buf: &[u8], out: &mut Vec<TcFilter>) -> io::Result<bool> {
    while buf.len() >= NLMSG_HDRLEN {
        let len = u32_at(buf, 0).ok_or_else(malformed)? as usize;
        let kind = u16_at(buf, 4).ok_or_else(malformed)?;
        if len < NLMSG_HDRLEN || len > buf.len() {
            return Err(malformed());
        }
        let body = &buf[NLMSG_HDRLEN..len];
        match kind {
            NLMSG_DONE => return Ok(true),
            NLMSG_ERROR => {
                let errno = u32_at(body, 0).ok_or_else(malformed)? as i32;
                if errno != 0 {
                    return Err(io::Error::from_raw_os_error(-errno));
                }
            }
            RTM_NEWTFILTER => {
                if let Some(f) = parse_filter(body)? {
                    out.push(f);
                }
            }
            _ => {}
        }
        buf = &buf[align4(len).min(buf.len())..];
    }
    Ok(false)
}

/// One `RTM_NEWTFILTER` body: `struct tcmsg` and its attributes. The dump also sends a
/// message per priority with no filter handle (the classifier instance itself): skipped.
fn parse_filter(body: &[u8]) -> io::Result<Option<TcFilter>> {
    let text = |value: &[u8]| {
        let s = value.split(|&b| b == 0).next().unwrap_or_default();
        String::from_utf8_lossy(s).into_owned()
    };
    if body.len() < TCMSG_LEN {
        return Err(malformed());
    }
    let handle = u32_at(body, 8).ok_or_else(malformed)?;
    let info = u32_at(body, 16).ok_or_else(malformed)?;
    if handle == 0 {
        return Ok(None);
    }
    let mut filter = TcFilter {
        priority: (info >> 16) as u16,
        handle,
        kind: String::new(),
        bpf_prog_id: None,
        bpf_name: None,
    };
    for (kind, value) in attributes(&body[TCMSG_LEN..])? {
        match kind {
            TCA_KIND => filter.kind = text(value),
            TCA_OPTIONS => {
                for (kind, value) in attributes(value)? {
                    match kind {
                        TCA_BPF_ID => filter.bpf_prog_id = u32_at(value, 0),
                        TCA_BPF_NAME => filter.bpf_name = Some(text(value)),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    Ok(Some(filter))
}

/// The (type, value) attributes packed in `b`.
fn attributes(mut b: &[u8]) -> io::Result<Vec<(u16, &[u8])>> {
    let mut out = Vec::new();
    while b.len() >= 4 {
        let len = usize::from(u16_at(b, 0).ok_or_else(malformed)?);
        let kind = u16_at(b, 2).ok_or_else(malformed)? & NLA_TYPE_MASK;
        if len < 4 || len > b.len() {
            return Err(malformed());
        }
        out.push((kind, &b[4..len]));
        b = &b[align4(len).min(b.len())..];
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attr(kind: u16, value: &[u8]) -> Vec<u8> {
        let mut a = Vec::new();
        a.extend_from_slice(&((4 + value.len()) as u16).to_ne_bytes());
        a.extend_from_slice(&kind.to_ne_bytes());
        a.extend_from_slice(value);
        a.resize(align4(a.len()), 0);
        a
    }

    /// A message as the kernel writes it: header, tcmsg (handle, info) and attributes.
    fn message(kind: u16, handle: u32, info: u32, attrs: &[Vec<u8>]) -> Vec<u8> {
        let mut body = vec![0u8; 4];
        body.extend_from_slice(&7i32.to_ne_bytes());
        body.extend_from_slice(&handle.to_ne_bytes());
        body.extend_from_slice(&TC_H_CLSACT_INGRESS.to_ne_bytes());
        body.extend_from_slice(&info.to_ne_bytes());
        for a in attrs {
            body.extend_from_slice(a);
        }
        let mut m = Vec::new();
        m.extend_from_slice(&((NLMSG_HDRLEN + body.len()) as u32).to_ne_bytes());
        m.extend_from_slice(&kind.to_ne_bytes());
        m.extend_from_slice(&[0u8; 10]);
        m.extend_from_slice(&body);
        m
    }

    #[test]
    fn a_dump_yields_each_filter_with_its_program() {
        // Priority 0xc0de, protocol ETH_P_ALL (0x0003 in network order).
        let info = (0xc0de << 16) | 0x0300;
        let bpf_options = attr(
            TCA_OPTIONS | 0x8000,
            &[
                attr(TCA_BPF_NAME, b"mcr_fastpath:[123]\0"),
                attr(TCA_BPF_ID, &123u32.to_ne_bytes()),
            ]
            .concat(),
        );
        let mut dump = message(RTM_NEWTFILTER, 0, info, &[attr(TCA_KIND, b"bpf\0")]);
        dump.extend(message(
            RTM_NEWTFILTER,
            0x4d4352,
            info,
            &[attr(TCA_KIND, b"bpf\0"), bpf_options],
        ));
        dump.extend(message(
            RTM_NEWTFILTER,
            0x800,
            1 << 16,
            &[attr(TCA_KIND, b"u32\0")],
        ));
        let mut out = Vec::new();
        assert!(!parse_dump(&dump, &mut out).unwrap(), "no NLMSG_DONE yet");
        assert_eq!(
            out,
            [
                TcFilter {
                    priority: 0xc0de,
                    handle: 0x4d4352,
                    kind: "bpf".into(),
                    bpf_prog_id: Some(123),
                    bpf_name: Some("mcr_fastpath:[123]".into()),
                },
                TcFilter {
                    priority: 1,
                    handle: 0x800,
                    kind: "u32".into(),
                    bpf_prog_id: None,
                    bpf_name: None,
                },
            ]
        );
        assert!(parse_dump(&message(NLMSG_DONE, 0, 0, &[]), &mut out).unwrap());
    }

    #[test]
    fn an_error_reply_or_a_cut_message_is_an_error() {
        let mut err = Vec::new();
        err.extend_from_slice(&20u32.to_ne_bytes());
        err.extend_from_slice(&NLMSG_ERROR.to_ne_bytes());
        err.extend_from_slice(&[0u8; 10]);
        err.extend_from_slice(&(-libc::EPERM).to_ne_bytes());
        let e = parse_dump(&err, &mut Vec::new()).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EPERM));

        let m = message(RTM_NEWTFILTER, 1, 0, &[attr(TCA_KIND, b"bpf\0")]);
        let e = parse_dump(&m[..m.len() - 4], &mut Vec::new()).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
    }

    #[test]
    fn the_request_asks_for_one_parent_of_one_interface() {
        let r = dump_request(7, TC_H_CLSACT_EGRESS);
        assert_eq!(r.len(), 36);
        assert_eq!(u32_at(&r, 0), Some(36));
        assert_eq!(u16_at(&r, 4), Some(RTM_GETTFILTER));
        assert_eq!(u16_at(&r, 6), Some(NLM_F_REQUEST | NLM_F_DUMP));
        assert_eq!(u32_at(&r, 20), Some(7));
        assert_eq!(u32_at(&r, 28), Some(TC_H_CLSACT_EGRESS));
    }
}
