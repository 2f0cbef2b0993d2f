//! The namespace-wide UDP receive-buffer drop counter from `/proc/net/snmp` (IPv4) or
//! `/proc/net/snmp6` (IPv6, one `Name value` pair per line).
//!
//! The file has pairs of lines per protocol: a header line of field names and a line of values,
//! both starting with `Udp:`. We look the column up by name rather than position because
//! kernels have added columns over time.

/// `Udp: RcvbufErrors` (or, for `ipv6`, `Udp6RcvbufErrors`) of the current network
/// namespace, or `None` if unreadable.
pub fn udp_rcvbuf_errors(ipv6: bool) -> Option<u64> {
    if ipv6 {
        parse_rcvbuf_errors_v6(&std::fs::read_to_string("/proc/net/snmp6").ok()?)
    } else {
        parse_rcvbuf_errors(&std::fs::read_to_string("/proc/net/snmp").ok()?)
    }
}

fn parse_rcvbuf_errors_v6(text: &str) -> Option<u64> {
    text.lines()
        .filter_map(|l| l.split_once(char::is_whitespace))
        .find(|(name, _)| *name == "Udp6RcvbufErrors")?
        .1
        .trim()
        .parse()
        .ok()
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
    fn finds_the_ipv6_counter_by_name() {
        let text = "Udp6InDatagrams                 \t10\nUdp6RcvbufErrors                \t42\n";
        assert_eq!(parse_rcvbuf_errors_v6(text), Some(42));
        assert_eq!(parse_rcvbuf_errors_v6("Udp6InDatagrams 1\n"), None);
    }

    #[test]
    fn reads_this_hosts_counters() {
        assert!(
            udp_rcvbuf_errors(false).is_some(),
            "/proc/net/snmp should be readable on Linux"
        );
        assert!(
            udp_rcvbuf_errors(true).is_some(),
            "/proc/net/snmp6 should be readable on a kernel with IPv6"
        );
    }
}
