//! Sticky balancing (`--balance sticky`): the master accepts, hashes the
//! client's IP to a stable worker slot and passes the connection's fd to that
//! slot's worker over a `SOCK_SEQPACKET` socketpair (SCM_RIGHTS, one fd per
//! packet). This module holds the pure routing rule and the two fd-passing
//! calls; the master's loop and the worker's accept loop use them. Not for
//! the JSON IPC (see `ipc`): fds travel on a socket of their own so a queue
//! of them never interleaves with lifecycle messages.

use std::io::{IoSlice, IoSliceMut};
use std::net::IpAddr;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::errno::Errno;
use nix::sys::socket::{
    AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags, SockFlag, SockType, recvmsg, sendmsg, socketpair,
};

/// A close-on-exec `SOCK_SEQPACKET` pair: packet boundaries keep exactly one
/// fd with each one-byte message.
pub fn pair() -> nix::Result<(OwnedFd, OwnedFd)> {
    socketpair(AddressFamily::Unix, SockType::SeqPacket, None, SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK)
}

/// Send `conn` without blocking. `EAGAIN` means the worker's queue is full
/// (it is not reading: busy or hung); the caller keeps the fd and retries.
pub fn send_fd(sock: BorrowedFd<'_>, conn: &OwnedFd) -> nix::Result<()> {
    let fds = [conn.as_raw_fd()];
    let iov = [IoSlice::new(b"c")];
    sendmsg::<()>(sock.as_raw_fd(), &iov, &[ControlMessage::ScmRights(&fds)], MsgFlags::MSG_DONTWAIT, None)?;
    Ok(())
}

/// What one non-blocking receive produced.
#[derive(Debug)]
pub enum Received {
    Conn(OwnedFd),
    /// Nothing queued now.
    Empty,
    /// The master closed its end (it died).
    Closed,
}

/// Receive one passed fd without blocking (close-on-exec).
pub fn recv_fd(sock: RawFd) -> nix::Result<Received> {
    let mut byte = [0u8; 1];
    let mut iov = [IoSliceMut::new(&mut byte)];
    let mut space = nix::cmsg_space!([RawFd; 1]);
    let msg = match recvmsg::<()>(sock, &mut iov, Some(&mut space), MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_CMSG_CLOEXEC)
    {
        Ok(m) => m,
        Err(Errno::EAGAIN) => return Ok(Received::Empty),
        Err(e) => return Err(e),
    };
    let mut got = None;
    for cmsg in msg.cmsgs()? {
        if let ControlMessageOwned::ScmRights(fds) = cmsg {
            for fd in fds {
                // SAFETY: SCM_RIGHTS just installed this fd in our table;
                // nothing else owns it. Extra fds (never sent) are closed.
                let owned = unsafe { OwnedFd::from_raw_fd(fd) };
                if got.is_none() {
                    got = Some(owned);
                }
            }
        }
    }
    match got {
        Some(fd) => Ok(Received::Conn(fd)),
        None if msg.bytes == 0 => Ok(Received::Closed),
        // A packet without an fd (cannot come from our master): skip it.
        None => Ok(Received::Empty),
    }
}

/// FNV-1a over the address bytes: fixed, so every master (and every run)
/// maps a client IP the same way. Only the IP: a client's source port
/// changes with every new connection, which would move its reconnects.
pub fn ip_hash(ip: IpAddr) -> u64 {
    let bytes: Vec<u8> = match ip {
        IpAddr::V4(v4) => v4.octets().to_vec(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.octets().to_vec(),
            None => v6.octets().to_vec(),
        },
    };
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// The routing key of a connection from `peer`: its IP's hash, or with
/// `by_port` (benchmarks only) the IP and source port, which spreads a
/// one-address load generator over the workers but moves every reconnect.
pub fn client_key(peer: std::net::SocketAddr, by_port: bool) -> u64 {
    let h = ip_hash(peer.ip());
    if by_port { (h ^ u64::from(peer.port())).wrapping_mul(0x9E37_79B9_7F4A_7C15) } else { h }
}

/// Jump consistent hash (Lamping & Veach 2014): key -> bucket in 0..n. When
/// n grows by one only 1/n of the keys move, so a changed worker count
/// (SIGTTIN/SIGTTOU) moves few clients.
pub fn jump_hash(mut key: u64, n: usize) -> usize {
    let n = n.max(1) as i64;
    let (mut b, mut j) = (-1i64, 0i64);
    while j < n {
        b = j;
        key = key.wrapping_mul(2_862_933_555_777_941_757).wrapping_add(1);
        j = ((b + 1) as f64 * ((1u64 << 31) as f64 / ((key >> 33) + 1) as f64)) as i64;
    }
    b as usize
}

/// The slot whose worker serves `hash`: its own slot (`jump_hash` over
/// `slots`) when that slot has a ready worker, else a fallback chosen among
/// the ready slots by the hash's other bits (so a dead slot's clients spread
/// over the others, and come home as soon as the slot is ready again).
/// None when no slot is ready.
pub fn choose(hash: u64, slots: usize, ready: &[bool]) -> Option<usize> {
    let home = jump_hash(hash, slots);
    if ready.get(home).copied().unwrap_or(false) {
        return Some(home);
    }
    let others: Vec<usize> = (0..slots.min(ready.len())).filter(|&s| ready[s]).collect();
    if others.is_empty() {
        return None;
    }
    Some(others[(hash.rotate_left(32) % others.len() as u64) as usize])
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn jump_hash_is_stable_and_moves_few_keys_on_growth() {
        let keys: Vec<u64> = (0..10_000u32).map(|i| ip_hash(IpAddr::V4(Ipv4Addr::from(i)))).collect();
        let before: Vec<usize> = keys.iter().map(|&k| jump_hash(k, 4)).collect();
        let after: Vec<usize> = keys.iter().map(|&k| jump_hash(k, 5)).collect();
        let moved = before.iter().zip(&after).filter(|(a, b)| a != b).count();
        // Ideal is 1/5 of the keys; every moved key lands in the new bucket.
        assert!((1500..2500).contains(&moved), "moved {moved}");
        assert!(before.iter().zip(&after).all(|(a, b)| a == b || *b == 4));
        let mut per = [0usize; 4];
        for b in before {
            per[b] += 1;
        }
        assert!(per.iter().all(|&c| (2000..3000).contains(&c)), "{per:?}");
    }

    #[test]
    fn choose_falls_back_only_for_the_dead_slot() {
        let ready = [true, true, true];
        let down = [true, false, true];
        for i in 0..1000u32 {
            let h = ip_hash(IpAddr::V4(Ipv4Addr::from(i)));
            let home = choose(h, 3, &ready).unwrap();
            let now = choose(h, 3, &down).unwrap();
            if home == 1 {
                assert_ne!(now, 1, "a dead slot gets nothing");
            } else {
                assert_eq!(now, home, "clients of live slots never move");
            }
        }
        assert_eq!(choose(1, 3, &[false, false, false]), None);
    }

    #[test]
    fn ipv4_mapped_hashes_like_ipv4() {
        let v4: IpAddr = "127.0.0.7".parse().unwrap();
        let mapped: IpAddr = "::ffff:127.0.0.7".parse().unwrap();
        assert_eq!(ip_hash(v4), ip_hash(mapped));
    }

    #[test]
    fn an_fd_crosses_the_pair() {
        let (a, b) = pair().unwrap();
        let (r, _w) = std::os::unix::net::UnixStream::pair().unwrap();
        let fd: OwnedFd = r.into();
        send_fd(std::os::fd::AsFd::as_fd(&a), &fd).unwrap();
        match recv_fd(b.as_raw_fd()).unwrap() {
            Received::Conn(got) => assert_ne!(got.as_raw_fd(), fd.as_raw_fd()),
            other => panic!("{other:?}"),
        }
        assert!(matches!(recv_fd(b.as_raw_fd()).unwrap(), Received::Empty));
        drop(a);
        assert!(matches!(recv_fd(b.as_raw_fd()).unwrap(), Received::Closed));
    }
}
