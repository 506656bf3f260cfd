//! The listening connection: what this instance hears of the others' writes.
//!
//! One connection per instance runs `LISTEN livesession`; every notification another instance's
//! commit sent becomes a [`Notice`]. A connection that only listens sends nothing, so a
//! heartbeat asks it `SELECT 1` now and then: a connection that died silently (a partition, a
//! failover) is replaced in seconds. After every `LISTEN` (the first included) it asks for a
//! [`Notice::Resync`]: whatever happened while it was not listening is read from the tables.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_postgres::AsyncMessage;
use tokio_util::sync::CancellationToken;

use super::PostgresStore;
use super::tls::Connector;
use crate::clock::Millis;
use crate::store::Notice;

/// The channel every instance listens on, and the statement that listens to it.
pub(super) const CHANNEL: &str = "livesession";
const LISTEN: &str = "LISTEN livesession";

/// The listener's reconnect delays: doubling from the first to the last.
const RECONNECT_FIRST: Duration = Duration::from_millis(50);
const RECONNECT_LAST: Duration = Duration::from_secs(5);

/// How often the listening connection is asked whether it is alive, and how long it may take
/// to answer before it is given up and replaced.
const HEARTBEAT: Duration = Duration::from_secs(10);
const HEARTBEAT_WAIT: Duration = Duration::from_secs(5);

impl PostgresStore {
    /// Starts the instance's listening connection: every other instance's notifications arrive
    /// as [`Notice`]s on `notices` until `shutdown`. The connection comes back on its own after
    /// it drops, and then sends [`Notice::Resync`]: whatever was missed meanwhile must be read
    /// from the tables.
    pub(in crate::store) fn listen(
        &self,
        notices: mpsc::Sender<Notice>,
        shutdown: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        let config = Arc::clone(&self.config);
        let instance = Arc::clone(&self.instance);
        tokio::spawn(async move {
            let mut delay = RECONNECT_FIRST;
            let mut connected_before = false;
            loop {
                let attempt = listen_once(&config, &instance, &notices);
                let outcome = tokio::select! {
                    outcome = attempt => outcome,
                    () = shutdown.cancelled() => return,
                };
                match outcome {
                    Listened::Closed if notices.is_closed() => return,
                    Listened::Closed => {
                        tracing::warn!(
                            "the PostgreSQL notification connection closed; reconnecting"
                        );
                        connected_before = true;
                        delay = RECONNECT_FIRST;
                    }
                    Listened::Failed(e) if connected_before => {
                        tracing::warn!(error = %e, "the PostgreSQL notification connection failed; reconnecting");
                    }
                    Listened::Failed(e) => {
                        tracing::warn!(error = %e, "cannot listen for PostgreSQL notifications yet; retrying");
                    }
                }
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    () = shutdown.cancelled() => return,
                }
                delay = (delay * 2).min(RECONNECT_LAST);
            }
        })
    }
}

/// How one listening connection ended.
enum Listened {
    /// It was up, then closed or failed.
    Closed,
    /// It never got to listening.
    Failed(tokio_postgres::Error),
}

/// Connects, listens, and forwards notifications until the connection ends or stops answering.
/// Once listening, it asks for a [`Notice::Resync`], even the first time: whatever happened
/// before (since this instance read its state at startup, or while it was not listening) is read
/// from the tables.
async fn listen_once(
    config: &Connector,
    instance: &str,
    notices: &mpsc::Sender<Notice>,
) -> Listened {
    let (client, mut connection) = match config.connect().await {
        Ok(connected) => connected,
        Err(e) => return Listened::Failed(e),
    };
    let listen = client.batch_execute(LISTEN);
    tokio::pin!(listen);
    let mut listening = false;
    // A connection that only listens sends nothing, so a silently dead one (a network partition,
    // a failover) would go unnoticed for as long as TCP takes to give up: ask it something now
    // and then.
    let mut heartbeat =
        tokio::time::interval_at(tokio::time::Instant::now() + HEARTBEAT, HEARTBEAT);
    let mut probe: Option<std::pin::Pin<Box<dyn Future<Output = bool> + Send + '_>>> = None;
    loop {
        tokio::select! {
            done = &mut listen, if !listening => {
                if let Err(e) = done {
                    return Listened::Failed(e);
                }
                listening = true;
                tracing::debug!("listening for PostgreSQL notifications");
                if notices.send(Notice::Resync).await.is_err() {
                    return Listened::Closed;
                }
            }
            _ = heartbeat.tick(), if listening && probe.is_none() => {
                let client = &client;
                probe = Some(Box::pin(async move {
                    let answer = tokio::time::timeout(HEARTBEAT_WAIT, client.simple_query("SELECT 1"));
                    matches!(answer.await, Ok(Ok(_)))
                }));
            }
            alive = async { probe.as_mut().expect("guarded").await }, if probe.is_some() => {
                probe = None;
                if !alive {
                    return Listened::Closed;
                }
            }
            message = std::future::poll_fn(|cx| connection.poll_message(cx)) => match message {
                Some(Ok(AsyncMessage::Notification(n))) if n.channel() == CHANNEL => {
                    if let Some(notice) = parse_notice(n.payload(), instance)
                        && notices.send(notice).await.is_err()
                    {
                        return Listened::Closed;
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(e)) if !listening => return Listened::Failed(e),
                Some(Err(_)) | None => return Listened::Closed,
            },
        }
    }
}

/// Reads a notification's payload; `None` for this instance's own, and for anything that is not
/// one of ours (the channel is open to every client of the database).
fn parse_notice(payload: &str, own_instance: &str) -> Option<Notice> {
    if payload.starts_with(own_instance) {
        return None;
    }
    let mut parts = payload.split(' ');
    let instance = parts.next()?;
    if instance.len() != 16 || !instance.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let kind = parts.next()?;
    if kind == "p" {
        return parts.next().is_none().then_some(Notice::Presence);
    }
    let notice = match (kind, parts.next()?, parts.next()) {
        ("s", id, Some(version)) => Notice::SettingsChanged {
            id: id.parse().ok()?,
            version: version.parse().ok()?,
        },
        ("f", id, Some(at)) => Notice::Forgotten {
            id: id.parse().ok()?,
            at: at.parse().ok()?,
        },
        ("m", id, None) => Notice::Message {
            id: id.parse().ok()?,
        },
        ("k", id, Some(expires_at)) => Notice::Link {
            id: id.parse().ok()?,
            expires_at: Some(expires_at.parse().ok()?).filter(|at: &Millis| *at > 0),
        },
        ("v", session, None) => Notice::Devices {
            session: session.parse().ok()?,
        },
        ("j", session, Some(device)) => Notice::Joined {
            session: session.parse().ok()?,
            device: device.parse().ok()?,
        },
        ("o", session, Some(device)) => Notice::SignedOut {
            session: session.parse().ok()?,
            device: device.parse().ok()?,
            at: parts.next()?.parse().ok()?,
        },
        _ => return None,
    };
    parts.next().is_none().then_some(notice)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::SessionId;

    const OWN: &str = "00000000000000aa ";
    const OTHER: &str = "00000000000000bb";

    #[test]
    fn notices_from_other_instances_are_read() {
        let id = SessionId::generate();
        assert_eq!(
            parse_notice(&format!("{OTHER} s {id} 7"), OWN),
            Some(Notice::SettingsChanged { id, version: 7 })
        );
        assert_eq!(
            parse_notice(&format!("{OTHER} f {id} 1700000000000"), OWN),
            Some(Notice::Forgotten {
                id,
                at: 1_700_000_000_000
            })
        );
        assert_eq!(
            parse_notice(&format!("{OTHER} m 42"), OWN),
            Some(Notice::Message { id: 42 })
        );
        assert_eq!(
            parse_notice(&format!("{OTHER} p"), OWN),
            Some(Notice::Presence)
        );
        assert_eq!(
            parse_notice(&format!("{OTHER} k {id} 1700000000000"), OWN),
            Some(Notice::Link {
                id,
                expires_at: Some(1_700_000_000_000)
            })
        );
        assert_eq!(
            parse_notice(&format!("{OTHER} k {id} 0"), OWN),
            Some(Notice::Link {
                id,
                expires_at: None
            })
        );
        let device = crate::session::DeviceId::generate();
        assert_eq!(
            parse_notice(&format!("{OTHER} v {id}"), OWN),
            Some(Notice::Devices { session: id })
        );
        assert_eq!(
            parse_notice(&format!("{OTHER} j {id} {device}"), OWN),
            Some(Notice::Joined {
                session: id,
                device
            })
        );
        assert_eq!(
            parse_notice(&format!("{OTHER} o {id} {device} 5"), OWN),
            Some(Notice::SignedOut {
                session: id,
                device,
                at: 5
            })
        );
        assert_eq!(parse_notice(&format!("{OTHER} o {id} {device}"), OWN), None);
    }

    #[test]
    fn own_and_foreign_notices_are_ignored() {
        let id = SessionId::generate();
        assert_eq!(parse_notice(&format!("{OWN}s {id} 7"), OWN), None);
        for junk in [
            "",
            "hello",
            &format!("{OTHER} s {id}"),
            &format!("{OTHER} s {id} 7 8"),
            &format!("{OTHER} s not-an-id 7"),
            &format!("{OTHER} m 1 2"),
            &format!("{OTHER} m x"),
            &format!("{OTHER} p 1"),
            &format!("{OTHER} x 1"),
            &format!("zz{OTHER} m 1"),
            "\u{0} m 1",
        ] {
            assert_eq!(parse_notice(junk, OWN), None, "{junk:?}");
        }
    }
}
