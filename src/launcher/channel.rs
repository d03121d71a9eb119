//! The sync channel between the launcher (parent) and the container init (child): a
//! `SOCK_SEQPACKET` socketpair, close-on-exec, one message per packet.
//!
//! ```text
//! parent -> child   Go      cgroups joined (and id maps written): start the setup
//! child  -> parent  Ready   setup done, waiting for Start
//! child  -> parent  Error   step + message; the child then exits
//! parent -> child   Start   exec now
//! child  -> parent  (EOF)   execve succeeded: the close-on-exec end closed
//! ```
//! EOF seen by the child (the parent died or dropped the [`super::CreatedInit`]) aborts it.

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use nix::sys::socket::{AddressFamily, MsgFlags, SockFlag, SockType, recv, send, socketpair};

#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Msg {
    Go,
    Ready,
    Start,
    Error { step: String, message: String },
}

const GO: u8 = b'G';
const READY: u8 = b'R';
const START: u8 = b'S';
const ERROR: u8 = b'E';

pub(crate) struct Channel(OwnedFd);

impl Channel {
    pub(crate) fn pair() -> io::Result<(Channel, Channel)> {
        let (a, b) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .map_err(io::Error::from)?;
        Ok((Channel(a), Channel(b)))
    }

    pub(crate) fn raw_fd(&self) -> i32 {
        self.0.as_raw_fd()
    }

    pub(crate) fn send(&self, msg: &Msg) -> io::Result<()> {
        let buf = encode(msg);
        loop {
            match send(self.0.as_fd().as_raw_fd(), &buf, MsgFlags::MSG_NOSIGNAL) {
                Ok(_) => return Ok(()),
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// The next message, or `None` on EOF.
    pub(crate) fn recv(&self) -> io::Result<Option<Msg>> {
        let mut buf = vec![0u8; 64 * 1024];
        let n = loop {
            match recv(self.0.as_raw_fd(), &mut buf, MsgFlags::empty()) {
                Ok(n) => break n,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(e.into()),
            }
        };
        if n == 0 {
            return Ok(None);
        }
        decode(&buf[..n]).map(Some)
    }
}

fn encode(msg: &Msg) -> Vec<u8> {
    match msg {
        Msg::Go => vec![GO],
        Msg::Ready => vec![READY],
        Msg::Start => vec![START],
        Msg::Error { step, message } => {
            let mut v = Vec::with_capacity(2 + step.len() + message.len());
            v.push(ERROR);
            v.extend_from_slice(step.as_bytes());
            v.push(0);
            // Keep the packet well under the receive buffer.
            let max = 60 * 1024;
            v.extend_from_slice(&message.as_bytes()[..message.len().min(max)]);
            v
        }
    }
}

fn decode(buf: &[u8]) -> io::Result<Msg> {
    match buf.split_first() {
        Some((&GO, _)) => Ok(Msg::Go),
        Some((&READY, _)) => Ok(Msg::Ready),
        Some((&START, _)) => Ok(Msg::Start),
        Some((&ERROR, rest)) => {
            let (step, message) = match rest.iter().position(|&b| b == 0) {
                Some(i) => (&rest[..i], &rest[i + 1..]),
                None => (rest, &[][..]),
            };
            Ok(Msg::Error {
                step: String::from_utf8_lossy(step).into_owned(),
                message: String::from_utf8_lossy(message).into_owned(),
            })
        }
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "unexpected message on the launcher sync channel",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_and_eof_is_none() {
        let (a, b) = Channel::pair().unwrap();
        for m in [
            Msg::Go,
            Msg::Ready,
            Msg::Start,
            Msg::Error {
                step: "mount /proc".into(),
                message: "EPERM: Operation not permitted".into(),
            },
        ] {
            a.send(&m).unwrap();
            assert_eq!(b.recv().unwrap(), Some(m));
        }
        drop(a);
        assert_eq!(b.recv().unwrap(), None);
    }
}
