//! The namespace-wide UDP receive-buffer drop counter from `/proc/net/snmp`.
//!
//! The file has pairs of lines per protocol: a header line of field names and a line of values,
//! both starting with `Udp:`. We look the column up by name rather than position because
//! kernels have added columns over time.

/// `Udp: RcvbufErrors` of the current network namespace, or `None` if unreadable.
pub fn udp_rcvbuf_errors() -> Option<u64> {
    parse_rcvbuf_errors(&std::fs::read_to_string("/proc/net/snmp").ok()?)
}

fn parse_rcvbuf_errors(text: &str) -> Option<u64> {
    let mut udp = text.lines().filter(|l| l.starts_with("Udp:"));
    let names = udp.next()?;
    let values = udp.next()?;
    let column = names.split_whitespace().position(|n| n == "RcvbufErrors")?;
    values.split_whitespace().nth(column)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_column_by_name() {
        let text = "Ip: Forwarding DefaultTTL\nIp: 1 64\n\
            Udp: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors\n\
            Udp: 10 2 3 4 77 0\nUdpLite: InDatagrams\nUdpLite: 0\n";
        assert_eq!(parse_rcvbuf_errors(text), Some(77));
        assert_eq!(parse_rcvbuf_errors("Udp: A B\nUdp: 1 2\n"), None);
        assert_eq!(parse_rcvbuf_errors(""), None);
    }

    #[test]
    fn reads_this_hosts_counter() {
        assert!(
            udp_rcvbuf_errors().is_some(),
            "/proc/net/snmp should be readable on Linux"
        );
    }
}
