//! The embedded DNS server of user-defined networks: 127.0.0.11:53 (UDP and
//! TCP) inside each container's namespace, as dockerd has it. Names of
//! containers on the container's networks (name, aliases, short ID,
//! hostname) are answered here; everything else is forwarded, from the
//! host's namespace, to the host's own nameservers.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use simple_dns::rdata::{RData, A};
use simple_dns::{Packet, PacketFlag, ResourceRecord, CLASS, QTYPE, RCODE, TYPE};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinHandle;

/// Where the server listens inside the container.
pub const LISTEN: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 11);
/// dockerd answers container names with this TTL.
const TTL: u32 = 600;

/// Looks a (lower-cased, dot-less at the end) name up for the container
/// the server belongs to: `Some(addresses)` when the name is one of its
/// networks' containers, `None` when it is not ours to answer.
pub type Lookup = Arc<dyn Fn(&str) -> Option<Vec<Ipv4Addr>> + Send + Sync>;

/// A running server; stops when dropped.
pub struct DnsServer {
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// The host's nameservers, where unknown names go.
pub fn host_upstreams() -> Vec<SocketAddr> {
    std::fs::read_to_string("/etc/resolv.conf")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            (w.next() == Some("nameserver"))
                .then(|| w.next())
                .flatten()
                .and_then(|ip| ip.parse::<std::net::IpAddr>().ok())
        })
        .map(|ip| SocketAddr::new(ip, 53))
        .collect()
}

/// Binds the server's sockets in the namespace at `netns` and serves them
/// on the current tokio runtime (call from inside it, e.g. spawn_blocking).
pub fn start(netns: &Path, lookup: Lookup) -> std::io::Result<DnsServer> {
    let (udp, tcp) = super::netns::run_in(netns, || {
        let addr = std::net::SocketAddrV4::new(LISTEN, 53);
        let udp = std::net::UdpSocket::bind(addr)?;
        let tcp = std::net::TcpListener::bind(addr)?;
        udp.set_nonblocking(true)?;
        tcp.set_nonblocking(true)?;
        Ok((udp, tcp))
    })?;
    let udp = Arc::new(tokio::net::UdpSocket::from_std(udp)?);
    let tcp = tokio::net::TcpListener::from_std(tcp)?;
    let upstreams = Arc::new(host_upstreams());
    let mut tasks = Vec::new();
    {
        let lookup = lookup.clone();
        let upstreams = upstreams.clone();
        tasks.push(tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            loop {
                let Ok((n, peer)) = udp.recv_from(&mut buf).await else {
                    break;
                };
                let query = buf[..n].to_vec();
                let (udp, lookup, upstreams) = (udp.clone(), lookup.clone(), upstreams.clone());
                tokio::spawn(async move {
                    if let Some(reply) = answer(&query, &lookup, &upstreams).await {
                        let _ = udp.send_to(&reply, peer).await;
                    }
                });
            }
        }));
    }
    tasks.push(tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = tcp.accept().await else {
                break;
            };
            let (lookup, upstreams) = (lookup.clone(), upstreams.clone());
            tokio::spawn(async move {
                loop {
                    let Ok(len) = stream.read_u16().await else {
                        return;
                    };
                    let mut query = vec![0u8; len as usize];
                    if stream.read_exact(&mut query).await.is_err() {
                        return;
                    }
                    let Some(reply) = answer(&query, &lookup, &upstreams).await else {
                        return;
                    };
                    if stream.write_u16(reply.len() as u16).await.is_err()
                        || stream.write_all(&reply).await.is_err()
                    {
                        return;
                    }
                }
            });
        }
    }));
    Ok(DnsServer { tasks })
}

/// The reply to one query: local names answered here, others forwarded.
async fn answer(query: &[u8], lookup: &Lookup, upstreams: &[SocketAddr]) -> Option<Vec<u8>> {
    let packet = Packet::parse(query).ok()?;
    let question = packet.questions.first()?.clone();
    let name = question
        .qname
        .to_string()
        .trim_end_matches('.')
        .to_ascii_lowercase();
    if let Some(ips) = lookup(&name) {
        return local_reply(&packet, &question, &ips);
    }
    forward(query, upstreams).await.or_else(|| {
        let mut reply = Packet::new_reply(packet.id());
        reply.set_flags(PacketFlag::RECURSION_AVAILABLE);
        if packet.has_flags(PacketFlag::RECURSION_DESIRED) {
            reply.set_flags(PacketFlag::RECURSION_DESIRED);
        }
        *reply.rcode_mut() = RCODE::ServerFailure;
        reply.questions.push(question);
        reply.build_bytes_vec().ok()
    })
}

/// An authoritative answer for one of our names: A records for A (and ANY)
/// queries; an empty NOERROR for the rest (AAAA: berth has no IPv6), so
/// clients never go looking for the name elsewhere.
fn local_reply(
    query: &Packet<'_>,
    question: &simple_dns::Question<'_>,
    ips: &[Ipv4Addr],
) -> Option<Vec<u8>> {
    let mut reply = Packet::new_reply(query.id());
    reply.set_flags(PacketFlag::AUTHORITATIVE_ANSWER | PacketFlag::RECURSION_AVAILABLE);
    if query.has_flags(PacketFlag::RECURSION_DESIRED) {
        reply.set_flags(PacketFlag::RECURSION_DESIRED);
    }
    let wants_a = matches!(question.qtype, QTYPE::TYPE(TYPE::A) | QTYPE::ANY);
    let owner = question.qname.clone();
    reply.questions.push(question.clone());
    if wants_a {
        for ip in ips {
            reply.answers.push(ResourceRecord::new(
                owner.clone(),
                CLASS::IN,
                TTL,
                RData::A(A {
                    address: u32::from(*ip),
                }),
            ));
        }
    }
    reply.build_bytes_vec().ok()
}

/// Sends the query to each upstream in turn (UDP, from the host's
/// namespace), returning the first answer.
async fn forward(query: &[u8], upstreams: &[SocketAddr]) -> Option<Vec<u8>> {
    for upstream in upstreams {
        let bind: SocketAddr = if upstream.is_ipv4() {
            "0.0.0.0:0".parse().ok()?
        } else {
            "[::]:0".parse().ok()?
        };
        let Ok(sock) = tokio::net::UdpSocket::bind(bind).await else {
            continue;
        };
        if sock.send_to(query, upstream).await.is_err() {
            continue;
        }
        let mut buf = vec![0u8; 4096];
        if let Ok(Ok((n, _))) =
            tokio::time::timeout(Duration::from_secs(3), sock.recv_from(&mut buf)).await
        {
            buf.truncate(n);
            return Some(buf);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use simple_dns::Name;

    /// A query for `name` (tests and `nslookup`-less checks).
    fn query_bytes(id: u16, name: &str, qtype: TYPE) -> Vec<u8> {
        let mut p = Packet::new_query(id);
        p.set_flags(PacketFlag::RECURSION_DESIRED);
        p.questions.push(simple_dns::Question::new(
            Name::new_unchecked(name),
            QTYPE::TYPE(qtype),
            simple_dns::QCLASS::CLASS(CLASS::IN),
            false,
        ));
        p.build_bytes_vec().unwrap_or_default()
    }

    #[tokio::test]
    async fn answers_local_names_and_refuses_nothing() {
        let lookup: Lookup =
            Arc::new(|name: &str| (name == "web").then(|| vec![Ipv4Addr::new(10, 9, 0, 2)]));
        let reply = answer(&query_bytes(7, "web", TYPE::A), &lookup, &[])
            .await
            .unwrap();
        let p = Packet::parse(&reply).unwrap();
        assert_eq!(p.id(), 7);
        assert_eq!(p.answers.len(), 1);
        match &p.answers[0].rdata {
            RData::A(a) => assert_eq!(Ipv4Addr::from(a.address), Ipv4Addr::new(10, 9, 0, 2)),
            other => panic!("{other:?}"),
        }
        let reply = answer(&query_bytes(8, "WEB.", TYPE::AAAA), &lookup, &[])
            .await
            .unwrap();
        let p = Packet::parse(&reply).unwrap();
        assert_eq!(p.rcode(), RCODE::NoError);
        assert!(p.answers.is_empty());
        // Not ours and nowhere to forward: SERVFAIL, never silence.
        let reply = answer(&query_bytes(9, "elsewhere", TYPE::A), &lookup, &[])
            .await
            .unwrap();
        assert_eq!(Packet::parse(&reply).unwrap().rcode(), RCODE::ServerFailure);
    }
}
