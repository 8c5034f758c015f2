//! The connection's state machine ([`SyncMachine`]): pure, inputs in and commands out,
//! with the [`SyncStatus`] it shows; tested natively.

use super::*;

/// What the status pill says about the document's sync.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncStatus {
    /// A connection is being opened, or the first exchange with the server is under way.
    Connecting,
    /// Everything made here is stored on the server, and the server's content is here.
    Synced,
    /// Local edits are sent but not yet confirmed as stored.
    Saving,
    /// No connection; edits are kept in this browser and sent on reconnect.
    Offline,
    /// The server refused edits from this page (the reason given); nothing is sent.
    ReadOnly(String),
    /// The document was deleted.
    Deleted,
    /// The server closed the connection over a problem (the reason given); retrying.
    Error(String),
}

impl SyncStatus {
    /// The machine-readable name, used in `data-state` attributes.
    pub fn as_str(&self) -> &'static str {
        match self {
            SyncStatus::Connecting => "connecting",
            SyncStatus::Synced => "synced",
            SyncStatus::Saving => "saving",
            SyncStatus::Offline => "offline",
            SyncStatus::ReadOnly(_) => "read-only",
            SyncStatus::Deleted => "deleted",
            SyncStatus::Error(_) => "error",
        }
    }

    /// The words on the pill.
    pub fn label(&self) -> &'static str {
        match self {
            SyncStatus::Connecting => "Connecting…",
            SyncStatus::Synced => "Saved",
            SyncStatus::Saving => "Saving…",
            SyncStatus::Offline => "Offline",
            SyncStatus::ReadOnly(_) => "Read-only",
            SyncStatus::Deleted => "Deleted",
            SyncStatus::Error(_) => "Error",
        }
    }

    /// Whether the page may let the user edit (as far as the sync is concerned).
    pub fn allows_edits(&self) -> bool {
        !matches!(self, SyncStatus::ReadOnly(_) | SyncStatus::Deleted)
    }
}

/// What happened to the connection, as the glue reports it to [`SyncMachine::handle`].
#[derive(Debug, Clone, PartialEq)]
pub enum SyncInput {
    /// The session starts (after the stored state is applied).
    Start {
        online: bool,
    },
    /// The socket opened.
    Opened {
        now_ms: f64,
    },
    /// Any frame arrived.
    Heard {
        now_ms: f64,
    },
    /// The server's step 1; `we_have_more`: this replica holds content the server's state
    /// vector does not (edits made offline, or stored before a reload).
    ServerStep1 {
        we_have_more: bool,
    },
    /// A step 2: the answer to one of our step 1 messages, in order.
    ServerStep2,
    /// An edit was made here.
    LocalChange,
    /// The server's auth message "permission denied".
    AuthDenied {
        reason: String,
    },
    /// The socket closed. `jitter` is a random number in `[0, 1)` for the backoff.
    Closed {
        code: u16,
        reason: String,
        jitter: f64,
    },
    BrowserOffline,
    BrowserOnline,
    /// The reconnect timer fired.
    RetryDue,
    /// The periodic check, with whether the browser believes it is online (in case an
    /// `online` event was missed).
    Tick {
        now_ms: f64,
        online: bool,
    },
    /// The page closes the session.
    Stop,
}

/// What the glue must do, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncCommand {
    /// Open a new socket (replacing any).
    Connect,
    /// Send a step 1 with the replica's state vector.
    SendStep1,
    /// Answer the server's step 1 with the update it lacks.
    SendStep2,
    /// Send the local update(s) being reported.
    SendUpdate,
    /// Send this client's awareness state.
    SendAwareness,
    /// Close the socket (its handlers removed first).
    CloseSocket,
    /// Schedule [`SyncInput::RetryDue`] in this many milliseconds.
    RetryIn(u32),
    /// Forget the scheduled reconnect.
    CancelRetry,
}

/// The connection's state: a pure machine. Local edits are numbered; a step 1 sent after
/// some of them were sent is a probe whose step 2 answer confirms them.
#[derive(Debug, Clone, PartialEq)]
pub struct SyncMachine {
    /// The socket's connection: backoff, the network, what a close means.
    link: Link,
    /// The answer to the connection's first step 1 arrived.
    synced: bool,
    /// ReadOnly or Deleted: the session is over.
    terminal: Option<SyncStatus>,
    stopped: bool,
    /// Local changes made (including "this replica had more than the server" at a
    /// connect).
    local_seq: u64,
    /// Local changes sent on the current connection.
    sent_seq: u64,
    /// Local changes the server confirmed as stored.
    confirmed_seq: u64,
    /// The step 1 messages awaiting their step 2, oldest first, each with the `sent_seq`
    /// it confirms.
    probes: VecDeque<u64>,
    last_heard_ms: f64,
    /// A problem worth showing as an error (a malformed-message close).
    error: Option<String>,
    /// Why the last connection ended, for the tooltip.
    last_close: Option<String>,
}

impl Default for SyncMachine {
    fn default() -> SyncMachine {
        SyncMachine {
            link: Link::new(Backoff::DOCUMENT),
            synced: false,
            terminal: None,
            stopped: false,
            local_seq: 0,
            sent_seq: 0,
            confirmed_seq: 0,
            probes: VecDeque::new(),
            last_heard_ms: 0.0,
            error: None,
            last_close: None,
        }
    }
}

/// What a close code of a document socket means for the connection: the document is
/// gone or refuses this page's edits (stop for good), or anything else (retry after the
/// backoff).
pub fn after_close(code: u16) -> AfterClose {
    match code {
        close_code::READ_ONLY | close_code::DELETED => AfterClose::Stop,
        _ => AfterClose::Retry,
    }
}

/// A sentence about why a document connection closed.
pub fn describe_close(code: u16, reason: &str) -> String {
    let what = match code {
        close_code::MALFORMED => "The server could not read a message from this page.".to_owned(),
        close_code::READ_ONLY => "You can no longer edit this document.".to_owned(),
        close_code::DELETED => "The document was deleted.".to_owned(),
        close_code::SLOW_CONSUMER => "This page fell behind on the document's updates.".to_owned(),
        close_code::HEARTBEAT_TIMEOUT => "The server stopped hearing from this page.".to_owned(),
        close_code::STORAGE_FAILED => "The server could not store an edit.".to_owned(),
        close_code::TOO_BIG => "An edit was larger than the server accepts.".to_owned(),
        1001 => "The server is restarting.".to_owned(),
        1006 => "Could not reach the server.".to_owned(),
        _ => format!("The connection closed (code {code})."),
    };
    crate::net::socket::close_sentence(what, reason)
}

impl SyncMachine {
    pub fn status(&self) -> SyncStatus {
        if let Some(terminal) = &self.terminal {
            return terminal.clone();
        }
        match self.link.phase() {
            Phase::Open if self.synced && self.confirmed_seq < self.local_seq => SyncStatus::Saving,
            Phase::Open if self.synced => SyncStatus::Synced,
            Phase::Open | Phase::Opening => SyncStatus::Connecting,
            Phase::Down => match &self.error {
                Some(error) => SyncStatus::Error(error.clone()),
                None => SyncStatus::Offline,
            },
        }
    }

    /// A longer explanation of the status, for the pill's tooltip.
    pub fn detail(&self) -> String {
        let status = self.status();
        let mut detail = match &status {
            SyncStatus::Connecting => "Connecting to the server…".to_owned(),
            SyncStatus::Synced => "Every edit is saved on the server.".to_owned(),
            SyncStatus::Saving => "Sending your latest edits…".to_owned(),
            SyncStatus::Offline => {
                "Offline: your edits are kept in this browser and sent when the connection is back."
                    .to_owned()
            }
            SyncStatus::ReadOnly(reason) => format!("Read-only: {reason}"),
            SyncStatus::Deleted => "This document was deleted.".to_owned(),
            SyncStatus::Error(error) => error.clone(),
        };
        if matches!(status, SyncStatus::Offline | SyncStatus::Error(_)) {
            if let (Some(close), SyncStatus::Offline) = (&self.last_close, &status) {
                detail.push(' ');
                detail.push_str(close);
            }
            match self.link.retry_in_ms() {
                Some(delay) => {
                    detail.push_str(&format!(" Retrying in {:.1} s.", delay as f64 / 1000.0))
                }
                None if !self.link.browser_online() => {
                    detail.push_str(" Waiting for the network to come back.")
                }
                None => {}
            }
        }
        detail
    }

    /// Whether the socket is open (frames may be sent).
    pub fn is_open(&self) -> bool {
        self.link.is_open()
    }

    /// Whether the session is over (read-only, deleted or stopped).
    pub fn is_over(&self) -> bool {
        self.terminal.is_some() || self.stopped
    }

    /// Connection attempts that failed since the last successful sync.
    pub fn failed_attempts(&self) -> u32 {
        self.link.failed_attempts()
    }

    pub fn handle(&mut self, input: SyncInput) -> Vec<SyncCommand> {
        if self.is_over() {
            return Vec::new();
        }
        let mut out = Vec::new();
        match input {
            SyncInput::Start { online } => self.link_input(LinkInput::Start { online }, &mut out),
            SyncInput::Opened { now_ms } => {
                if self.link.phase() != Phase::Opening {
                    return out;
                }
                self.link_input(LinkInput::Opened, &mut out);
                self.synced = false;
                self.last_heard_ms = now_ms;
                // Nothing of ours is on this connection yet: the first step 2 confirms
                // nothing new, it brings the server's content.
                self.sent_seq = self.confirmed_seq;
                self.probes.clear();
                self.probes.push_back(self.sent_seq);
                out.push(SyncCommand::SendStep1);
                out.push(SyncCommand::SendAwareness);
            }
            SyncInput::Heard { now_ms } => self.last_heard_ms = now_ms,
            SyncInput::ServerStep1 { we_have_more } => {
                if !self.is_open() {
                    return out;
                }
                if we_have_more {
                    self.local_seq += 1;
                }
                // The step 2 carries everything this replica has that the server lacks.
                self.sent_seq = self.local_seq;
                out.push(SyncCommand::SendStep2);
                self.probe_if_needed(&mut out);
            }
            SyncInput::ServerStep2 => {
                if !self.is_open() {
                    return out;
                }
                if let Some(covered) = self.probes.pop_front() {
                    self.confirmed_seq = self.confirmed_seq.max(covered);
                }
                if !self.synced {
                    self.synced = true;
                    self.link_input(LinkInput::Ready, &mut out);
                    self.error = None;
                    self.last_close = None;
                }
                self.probe_if_needed(&mut out);
            }
            SyncInput::LocalChange => {
                self.local_seq += 1;
                if self.is_open() {
                    self.sent_seq = self.local_seq;
                    out.push(SyncCommand::SendUpdate);
                    self.probe_if_needed(&mut out);
                }
            }
            SyncInput::AuthDenied { reason } => {
                let reason = if reason.trim().is_empty() {
                    "the server refused edits from this page".to_owned()
                } else {
                    reason
                };
                self.terminal = Some(SyncStatus::ReadOnly(reason));
                self.link_input(LinkInput::Stop, &mut out);
            }
            SyncInput::Closed {
                code,
                reason,
                jitter,
            } => {
                if self.link.phase() == Phase::Down {
                    return out;
                }
                match code {
                    close_code::READ_ONLY => {
                        let reason = if reason.trim().is_empty() {
                            "your access to this document changed".to_owned()
                        } else {
                            reason.clone()
                        };
                        self.terminal = Some(SyncStatus::ReadOnly(reason));
                    }
                    close_code::DELETED => self.terminal = Some(SyncStatus::Deleted),
                    close_code::MALFORMED | close_code::TOO_BIG => {
                        self.error = Some(describe_close(code, &reason));
                    }
                    _ => {}
                }
                if self.terminal.is_none() {
                    self.last_close = Some(describe_close(code, &reason));
                }
                let after = after_close(code);
                self.link_input(LinkInput::Closed { after, jitter }, &mut out);
            }
            SyncInput::BrowserOffline => {
                self.link_input(LinkInput::BrowserOffline, &mut out);
                self.last_close = None;
            }
            SyncInput::BrowserOnline => self.link_input(LinkInput::BrowserOnline, &mut out),
            SyncInput::RetryDue => self.link_input(LinkInput::RetryDue, &mut out),
            SyncInput::Tick { now_ms, online } => {
                if online && !self.link.browser_online() {
                    self.link_input(LinkInput::NetworkCheck { online }, &mut out);
                    return out;
                }
                if !self.is_open() {
                    return out;
                }
                let silent_for = now_ms - self.last_heard_ms;
                if silent_for >= SILENCE_CLOSE_MS {
                    self.last_close = Some("The server stopped answering.".to_owned());
                    self.link_input(LinkInput::Lost { jitter: 0.0 }, &mut out);
                } else if silent_for >= SILENCE_PROBE_MS && self.probes.is_empty() {
                    self.probes.push_back(self.sent_seq);
                    out.push(SyncCommand::SendStep1);
                }
            }
            SyncInput::Stop => {
                self.link_input(LinkInput::Stop, &mut out);
                self.stopped = true;
            }
        }
        out
    }

    /// Feeds the link and turns what it asks into commands. Whatever leaves the open
    /// state takes the connection's probes with it.
    fn link_input(&mut self, input: LinkInput, out: &mut Vec<SyncCommand>) {
        for command in self.link.handle(input) {
            out.push(match command {
                LinkCommand::Connect => SyncCommand::Connect,
                LinkCommand::Close => SyncCommand::CloseSocket,
                LinkCommand::RetryIn(delay) => SyncCommand::RetryIn(delay),
                LinkCommand::CancelRetry => SyncCommand::CancelRetry,
            });
        }
        if !self.link.is_open() {
            self.probes.clear();
            self.synced = false;
        }
    }

    /// Sends a step 1 when something sent is unconfirmed and no probe is on its way.
    fn probe_if_needed(&mut self, out: &mut Vec<SyncCommand>) {
        if self.is_open() && self.probes.is_empty() && self.sent_seq > self.confirmed_seq {
            self.probes.push_back(self.sent_seq);
            out.push(SyncCommand::SendStep1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use SyncCommand as C;
    use SyncInput as I;

    /// A machine that connected and finished its first exchange with nothing to send.
    fn synced() -> SyncMachine {
        let mut m = SyncMachine::default();
        assert_eq!(m.handle(I::Start { online: true }), vec![C::Connect]);
        assert_eq!(m.status(), SyncStatus::Connecting);
        assert_eq!(
            m.handle(I::Opened { now_ms: 0.0 }),
            vec![C::SendStep1, C::SendAwareness]
        );
        assert_eq!(m.status(), SyncStatus::Connecting);
        assert_eq!(
            m.handle(I::ServerStep1 {
                we_have_more: false
            }),
            vec![C::SendStep2]
        );
        assert_eq!(m.handle(I::ServerStep2), vec![]);
        assert_eq!(m.status(), SyncStatus::Synced);
        m
    }

    fn closed(code: u16) -> SyncInput {
        I::Closed {
            code,
            reason: String::new(),
            jitter: 0.5,
        }
    }

    #[test]
    fn local_edits_are_saving_until_a_step_2_answers_a_later_step_1() {
        let mut m = synced();
        assert_eq!(m.handle(I::LocalChange), vec![C::SendUpdate, C::SendStep1]);
        assert_eq!(m.status(), SyncStatus::Saving);
        // A second edit goes out at once, but one probe at a time is enough.
        assert_eq!(m.handle(I::LocalChange), vec![C::SendUpdate]);
        // The first probe's answer confirms only the first edit: probe again.
        assert_eq!(m.handle(I::ServerStep2), vec![C::SendStep1]);
        assert_eq!(m.status(), SyncStatus::Saving);
        assert_eq!(m.handle(I::ServerStep2), vec![]);
        assert_eq!(m.status(), SyncStatus::Synced);
        // A remote update changes nothing about what is saved.
        assert_eq!(m.status().as_str(), "synced");
    }

    #[test]
    fn offline_edits_wait_for_the_network_and_go_out_in_the_step_2() {
        let mut m = synced();
        assert_eq!(m.handle(I::BrowserOffline), vec![C::CloseSocket]);
        assert_eq!(m.status(), SyncStatus::Offline);
        assert!(
            m.detail().contains("kept in this browser"),
            "{}",
            m.detail()
        );
        assert!(
            m.detail().contains("Waiting for the network"),
            "{}",
            m.detail()
        );
        // Edits made offline are not sent, and nothing reconnects on its own.
        assert_eq!(m.handle(I::LocalChange), vec![]);
        assert_eq!(m.handle(I::LocalChange), vec![]);
        assert_eq!(m.handle(I::RetryDue), vec![]);
        assert_eq!(m.status(), SyncStatus::Offline);

        assert_eq!(m.handle(I::BrowserOnline), vec![C::Connect]);
        assert_eq!(
            m.handle(I::Opened { now_ms: 1.0 }),
            vec![C::SendStep1, C::SendAwareness]
        );
        // The server's step 1: our step 2 carries the offline edits.
        assert_eq!(
            m.handle(I::ServerStep1 { we_have_more: true }),
            vec![C::SendStep2]
        );
        // The answer to our first step 1 brings the server's content and confirms none
        // of ours: now a probe asks for the confirmation.
        assert_eq!(m.handle(I::ServerStep2), vec![C::SendStep1]);
        assert_eq!(m.status(), SyncStatus::Saving);
        assert_eq!(m.handle(I::ServerStep2), vec![]);
        assert_eq!(m.status(), SyncStatus::Synced);
    }

    #[test]
    fn a_reload_with_a_copy_the_server_lacks_shows_saving_until_confirmed() {
        let mut m = SyncMachine::default();
        m.handle(I::Start { online: true });
        m.handle(I::Opened { now_ms: 0.0 });
        // Our step 1 is answered first this time.
        assert_eq!(m.handle(I::ServerStep2), vec![]);
        assert_eq!(m.status(), SyncStatus::Synced);
        assert_eq!(
            m.handle(I::ServerStep1 { we_have_more: true }),
            vec![C::SendStep2, C::SendStep1]
        );
        assert_eq!(m.status(), SyncStatus::Saving);
        m.handle(I::ServerStep2);
        assert_eq!(m.status(), SyncStatus::Synced);
    }

    #[test]
    fn a_broken_connection_reconnects_with_growing_jittered_delays() {
        let mut m = synced();
        assert_eq!(m.handle(closed(1006)), vec![C::RetryIn(250)]);
        assert_eq!(m.status(), SyncStatus::Offline);
        assert!(m.detail().contains("Retrying in 0.2 s"), "{}", m.detail());
        assert_eq!(m.handle(I::RetryDue), vec![C::Connect]);
        assert_eq!(m.handle(closed(1006)), vec![C::RetryIn(500)]);
        m.handle(I::RetryDue);
        assert_eq!(m.handle(closed(1006)), vec![C::RetryIn(1000)]);
        assert_eq!(m.failed_attempts(), 3);
        // The browser coming back online reconnects at once, forgetting the backoff.
        assert_eq!(m.handle(I::BrowserOnline), vec![C::CancelRetry, C::Connect]);
        assert_eq!(m.failed_attempts(), 0);
        // A successful exchange resets it too.
        m.handle(closed(1006));
        m.handle(I::RetryDue);
        m.handle(I::Opened { now_ms: 0.0 });
        m.handle(I::ServerStep2);
        assert_eq!(m.failed_attempts(), 0);
        assert_eq!(m.status(), SyncStatus::Synced);
        // A close reported twice is handled once.
        assert_eq!(m.handle(closed(1001)).len(), 1);
        assert_eq!(m.handle(closed(1001)), vec![]);
    }

    #[test]
    fn reconnect_delays_are_capped_at_ten_seconds() {
        let backoff = Backoff::DOCUMENT;
        assert_eq!(backoff.delay_ms(0, 0.0), 0);
        assert_eq!(backoff.delay_ms(0, 0.999_999), 499);
        assert_eq!(backoff.delay_ms(3, 1.0), 4_000);
        assert_eq!(backoff.delay_ms(5, 1.0), 10_000);
        assert_eq!(backoff.delay_ms(40, 0.5), 10_000 / 2);
        assert_eq!(backoff.delay_ms(2, f64::NAN), 0);
        // The close codes that end a session for good, and those that are retried.
        assert_eq!(after_close(close_code::READ_ONLY), AfterClose::Stop);
        assert_eq!(after_close(close_code::DELETED), AfterClose::Stop);
        assert_eq!(after_close(close_code::MALFORMED), AfterClose::Retry);
        assert_eq!(after_close(1006), AfterClose::Retry);
    }

    #[test]
    fn a_closed_offline_connection_waits_for_the_online_event() {
        let mut m = synced();
        m.handle(I::BrowserOffline);
        // A late close of the old socket is ignored; a fresh start offline does not dial.
        assert_eq!(m.handle(closed(1006)), vec![]);
        let mut fresh = SyncMachine::default();
        assert_eq!(fresh.handle(I::Start { online: false }), vec![]);
        assert_eq!(fresh.status(), SyncStatus::Offline);
        assert_eq!(fresh.handle(I::BrowserOnline), vec![C::Connect]);
        // A missed `online` event: the periodic check notices the network is back.
        m.handle(I::Tick {
            now_ms: 1.0,
            online: false,
        });
        assert_eq!(m.status(), SyncStatus::Offline);
        assert_eq!(
            m.handle(I::Tick {
                now_ms: 2.0,
                online: true
            }),
            vec![C::Connect]
        );
    }

    #[test]
    fn read_only_and_deleted_stop_for_good() {
        let mut m = synced();
        assert_eq!(
            m.handle(I::AuthDenied {
                reason: "read-only: you are a viewer of this document".into()
            }),
            vec![C::CloseSocket]
        );
        assert_eq!(
            m.status(),
            SyncStatus::ReadOnly("read-only: you are a viewer of this document".into())
        );
        assert!(!m.status().allows_edits());
        // The close that follows, the network and the timers change nothing.
        assert_eq!(m.handle(closed(close_code::READ_ONLY)), vec![]);
        assert_eq!(m.handle(I::BrowserOnline), vec![]);
        assert_eq!(m.handle(I::LocalChange), vec![]);
        assert!(m.is_over());

        let mut revoked = synced();
        assert_eq!(revoked.handle(closed(close_code::READ_ONLY)), vec![]);
        assert_eq!(revoked.status().as_str(), "read-only");

        let mut deleted = synced();
        assert_eq!(deleted.handle(closed(close_code::DELETED)), vec![]);
        assert_eq!(deleted.status(), SyncStatus::Deleted);
        assert_eq!(deleted.handle(I::RetryDue), vec![]);
        assert_eq!(deleted.handle(I::BrowserOnline), vec![]);
    }

    #[test]
    fn a_malformed_close_is_an_error_until_the_next_sync() {
        let mut m = synced();
        m.handle(I::Closed {
            code: close_code::MALFORMED,
            reason: "malformed message: empty frame".into(),
            jitter: 0.0,
        });
        match m.status() {
            SyncStatus::Error(message) => assert!(message.contains("empty frame"), "{message}"),
            other => panic!("{other:?}"),
        }
        m.handle(I::RetryDue);
        m.handle(I::Opened { now_ms: 0.0 });
        m.handle(I::ServerStep2);
        assert_eq!(m.status(), SyncStatus::Synced);
    }

    #[test]
    fn a_silent_server_is_probed_then_given_up() {
        let mut m = synced();
        m.handle(I::Heard { now_ms: 1_000.0 });
        assert_eq!(
            m.handle(I::Tick {
                now_ms: 10_000.0,
                online: true
            }),
            vec![]
        );
        assert_eq!(
            m.handle(I::Tick {
                now_ms: 16_000.0,
                online: true
            }),
            vec![C::SendStep1]
        );
        // One probe at a time.
        assert_eq!(
            m.handle(I::Tick {
                now_ms: 20_000.0,
                online: true
            }),
            vec![]
        );
        assert_eq!(
            m.handle(I::Tick {
                now_ms: 31_000.0,
                online: true
            }),
            vec![C::CloseSocket, C::RetryIn(0)]
        );
        assert_eq!(m.status(), SyncStatus::Offline);
        assert!(m.detail().contains("stopped answering"), "{}", m.detail());
    }

    #[test]
    fn stopping_closes_and_ignores_the_rest() {
        let mut m = synced();
        assert_eq!(m.handle(I::Stop), vec![C::CloseSocket]);
        assert_eq!(m.handle(I::BrowserOnline), vec![]);
        assert_eq!(m.handle(I::LocalChange), vec![]);
    }

    #[test]
    fn statuses_have_stable_names_and_labels() {
        let all = [
            (SyncStatus::Connecting, "connecting"),
            (SyncStatus::Synced, "synced"),
            (SyncStatus::Saving, "saving"),
            (SyncStatus::Offline, "offline"),
            (SyncStatus::ReadOnly("x".into()), "read-only"),
            (SyncStatus::Deleted, "deleted"),
            (SyncStatus::Error("x".into()), "error"),
        ];
        for (status, name) in all {
            assert_eq!(status.as_str(), name);
            assert!(!status.label().is_empty());
        }
        assert_eq!(
            describe_close(close_code::SLOW_CONSUMER, " too slow "),
            "This page fell behind on the document's updates. (too slow)"
        );
        assert_eq!(
            describe_close(4999, ""),
            "The connection closed (code 4999)."
        );
    }
}
