//! The session's traffic: local updates of the replica out (server, storage, tabs), the
//! socket's frames in, the [`SyncMachine`]'s commands carried out, the other tabs, the
//! window's events and the ticker.

use super::*;

impl DocSession {
    pub(super) fn observe_replica(&self) {
        let weak = Rc::downgrade(&self.inner);
        let observed = self.inner.doc.doc().observe_update_v1(
            OBSERVER_KEY,
            move |txn: &TransactionMut, event: &UpdateEvent| {
                // Inside the replica's write: only queue, the flush does the rest.
                if let Some(session) = DocSession::upgrade(&weak) {
                    session
                        .inner
                        .observed
                        .borrow_mut()
                        .push((source_of(txn), event.update.clone()));
                    session.schedule_flush();
                }
            },
        );
        if observed.is_err() {
            self.inner.state.borrow_mut().storage_note =
                Some("This page could not follow the document's changes.".to_owned());
        }
    }

    pub(super) fn schedule_flush(&self) {
        if !self.inner.flush_scheduled.replace(true) {
            let session = self.clone();
            spawn_local(async move { session.flush() });
        }
    }

    /// Sends, stores and posts what the replica did since the last flush, and publishes
    /// the latest cursor.
    pub(super) fn flush(&self) {
        self.inner.flush_scheduled.set(false);
        let deferred = std::mem::take(&mut *self.inner.deferred.borrow_mut());
        for work in deferred {
            match work {
                Deferred::Apply(origin, update) => self.apply(&update, origin),
                Deferred::Frame(generation, frame) => self.on_frame(generation, &frame),
                Deferred::Step1 => self.send_step1(),
            }
        }
        let batch = std::mem::take(&mut *self.inner.observed.borrow_mut());
        let mut local = Vec::new();
        let mut to_store = Vec::new();
        for (source, update) in batch {
            match source {
                Source::Local => {
                    local.push(update.clone());
                    to_store.push(update);
                }
                Source::Remote | Source::Tab => to_store.push(update),
                Source::Persisted => {}
            }
        }
        if let Some(update) = merge_updates(local) {
            let commands = {
                let mut state = self.inner.state.borrow_mut();
                if let Some(tab) = &state.tab {
                    tab.post(&update);
                }
                state.machine.handle(SyncInput::LocalChange)
            };
            self.run(
                commands,
                CommandContext {
                    update: Some(update),
                    ..CommandContext::default()
                },
            );
        }
        if let Some(update) = merge_updates(to_store) {
            self.store(update);
        }
        self.publish_cursor();
        self.emit();
    }

    pub(super) fn publish_cursor(&self) {
        let Some((anchor, head)) = self.inner.state.borrow_mut().pending_cursor.take() else {
            return;
        };
        let cursor = match self.inner.doc.doc().try_transact() {
            Ok(txn) => cursor_at(&txn, self.inner.doc.text(), anchor, head),
            Err(_) => {
                // Busy: published at the next flush.
                self.inner.state.borrow_mut().pending_cursor = Some((anchor, head));
                return;
            }
        };
        let mut state = self.inner.state.borrow_mut();
        if state.presence.set_cursor(Some(cursor)) && state.machine.is_open() {
            let update = state.presence.local_update(now_ms());
            if let Some(socket) = &state.socket {
                socket.send_bytes(&protocol::awareness(update));
            }
        }
    }

    /// Feeds the machine and runs what it asks for.
    pub(super) fn input(&self, input: SyncInput) {
        let commands = self.inner.state.borrow_mut().machine.handle(input);
        self.run(commands, CommandContext::default());
    }

    pub(super) fn run(&self, commands: Vec<SyncCommand>, mut context: CommandContext) {
        for command in commands {
            match command {
                SyncCommand::Connect => self.connect(),
                SyncCommand::SendStep1 => self.send_step1(),
                SyncCommand::SendStep2 => {
                    if let Some(update) = context.step2.take() {
                        self.send(&protocol::step2(update));
                    }
                }
                SyncCommand::SendUpdate => {
                    if let Some(update) = context.update.take() {
                        self.send(&protocol::update(update));
                    }
                }
                SyncCommand::SendAwareness => {
                    let mut state = self.inner.state.borrow_mut();
                    let update = state.presence.local_update(now_ms());
                    if let Some(socket) = &state.socket {
                        socket.send_bytes(&protocol::awareness(update));
                    }
                }
                SyncCommand::CloseSocket => {
                    let socket = self.inner.state.borrow_mut().socket.take();
                    drop(socket);
                    if self.inner.state.borrow_mut().presence.forget_peers() {
                        self.emit();
                    }
                }
                SyncCommand::RetryIn(delay) => {
                    let weak = Rc::downgrade(&self.inner);
                    let timer = Timeout::new(delay, move || {
                        if let Some(session) = DocSession::upgrade(&weak) {
                            session.inner.state.borrow_mut().retry = None;
                            session.input(SyncInput::RetryDue);
                            session.emit();
                        }
                    });
                    self.inner.state.borrow_mut().retry = Some(timer);
                }
                SyncCommand::CancelRetry => {
                    let retry = self.inner.state.borrow_mut().retry.take();
                    drop(retry);
                }
            }
        }
    }

    pub(super) fn send(&self, bytes: &[u8]) {
        if let Some(socket) = &self.inner.state.borrow().socket {
            socket.send_bytes(bytes);
        }
    }

    pub(super) fn connect(&self) {
        let opened = {
            let mut state = self.inner.state.borrow_mut();
            let state = &mut *state;
            state.socket = None;
            state.generation += 1;
            let generation = state.generation;
            let on_open = Rc::downgrade(&self.inner);
            let on_frame = Rc::downgrade(&self.inner);
            let on_close = Rc::downgrade(&self.inner);
            let events = SocketEvents {
                on_open: Box::new(move || {
                    if let Some(session) = DocSession::upgrade(&on_open) {
                        session.on_open(generation);
                    }
                }),
                on_frame: Box::new(move |frame| {
                    // Text frames are not part of the protocol: ignored.
                    if let (Some(session), Frame::Binary(bytes)) =
                        (DocSession::upgrade(&on_frame), frame)
                    {
                        session.on_frame(generation, &bytes);
                    }
                }),
                on_close: Box::new(move |code, reason| {
                    if let Some(session) = DocSession::upgrade(&on_close) {
                        session.on_close(generation, code, &reason);
                    }
                }),
            };
            match Socket::open(&doc_ws_url(&state.doc_id), events) {
                Ok(socket) => {
                    state.socket = Some(socket);
                    true
                }
                Err(_) => false,
            }
        };
        if !opened {
            self.input(SyncInput::Closed {
                code: ABNORMAL_CLOSURE,
                reason: "this browser refused to open the connection".to_owned(),
                jitter: browser::random_unit(),
            });
        }
    }

    pub(super) fn current(&self, generation: u64) -> bool {
        let state = self.inner.state.borrow();
        !state.closed && state.generation == generation
    }

    pub(super) fn on_open(&self, generation: u64) {
        if !self.current(generation) {
            return;
        }
        self.inner.state.borrow_mut().presence.reconnecting();
        self.input(SyncInput::Opened { now_ms: now_ms() });
        self.emit();
    }

    pub(super) fn on_close(&self, generation: u64, code: u16, reason: &str) {
        if !self.current(generation) {
            return;
        }
        {
            let mut state = self.inner.state.borrow_mut();
            // Closed already: dropping it must not close it again.
            if let Some(socket) = state.socket.take() {
                socket.forget_closed();
            }
            state.presence.forget_peers();
        }
        self.input(SyncInput::Closed {
            code,
            reason: reason.to_owned(),
            jitter: browser::random_unit(),
        });
        self.emit();
    }

    pub(super) fn on_frame(&self, generation: u64, bytes: &[u8]) {
        if !self.current(generation) {
            return;
        }
        let now = now_ms();
        self.input(SyncInput::Heard { now_ms: now });
        let Ok(frame) = decode_server_frame(bytes) else {
            // Not for this client to judge the server: nothing is applied.
            return;
        };
        match frame {
            ServerFrame::Step1(their_sv) => {
                let answer = self.inner.doc.doc().try_transact().ok().map(|txn| {
                    (
                        txn.encode_state_as_update_v1(&their_sv),
                        has_more_than(&txn.state_vector(), &their_sv),
                    )
                });
                let Some((step2, we_have_more)) = answer else {
                    self.defer(Deferred::Frame(generation, bytes.to_vec()));
                    return;
                };
                let commands = self
                    .inner
                    .state
                    .borrow_mut()
                    .machine
                    .handle(SyncInput::ServerStep1 { we_have_more });
                self.run(
                    commands,
                    CommandContext {
                        step2: Some(step2),
                        ..CommandContext::default()
                    },
                );
            }
            ServerFrame::Step2(update) => {
                self.apply(&update, REMOTE_ORIGIN);
                self.input(SyncInput::ServerStep2);
            }
            ServerFrame::Update(update) => self.apply(&update, REMOTE_ORIGIN),
            ServerFrame::Awareness(update) => {
                let mut state = self.inner.state.borrow_mut();
                let change = state.presence.apply(&update, now);
                if change.reannounce && state.machine.is_open() {
                    let update = state.presence.local_update(now);
                    if let Some(socket) = &state.socket {
                        socket.send_bytes(&protocol::awareness(update));
                    }
                }
                if !change.changed {
                    return;
                }
            }
            ServerFrame::Denied(reason) => {
                self.input(SyncInput::AuthDenied { reason });
            }
            ServerFrame::Ignored => return,
        }
        self.emit();
    }

    /// Applies an update that came from elsewhere, with its origin (no borrow held: the
    /// observer runs inside). If the replica is busy, the next flush applies it.
    pub(super) fn apply(&self, bytes: &[u8], origin: &'static str) {
        let Ok(update) = Update::decode_v1(bytes) else {
            return;
        };
        if update.is_empty() {
            // Most answers to a probe: nothing new, nothing to render.
            return;
        }
        let applied = match self.inner.doc.doc().try_transact_mut_with(origin) {
            // An update whose dependencies are missing waits inside the replica.
            Ok(mut txn) => txn.apply_update(update).is_ok(),
            Err(_) => {
                self.defer(Deferred::Apply(origin, bytes.to_vec()));
                false
            }
        };
        if applied {
            self.inner.state.borrow_mut().revision += 1;
        }
    }

    /// Puts work off until the replica is free: a little later rather than in a
    /// microtask, so that whoever holds it gets to run first.
    pub(super) fn defer(&self, work: Deferred) {
        self.inner.deferred.borrow_mut().push(work);
        let session = self.clone();
        spawn_local(async move {
            TimeoutFuture::new(DEFERRED_RETRY_MS).await;
            session.flush();
        });
    }

    pub(super) fn send_step1(&self) {
        match self.inner.doc.doc().try_transact() {
            Ok(txn) => {
                let sv = txn.state_vector();
                drop(txn);
                self.send(&protocol::step1(&sv));
            }
            Err(_) => self.defer(Deferred::Step1),
        }
    }

    pub(super) fn open_tab_channel(&self) {
        let doc_id = self.inner.state.borrow().doc_id.clone();
        let weak = Rc::downgrade(&self.inner);
        let channel = DocTabChannel::open(&doc_id, move |update| {
            if let Some(session) = DocSession::upgrade(&weak) {
                if !session.inner.state.borrow().closed {
                    session.apply(&update, TAB_ORIGIN);
                    session.emit();
                }
            }
        });
        // Without BroadcastChannel the tabs still meet through the server.
        self.inner.state.borrow_mut().tab = channel;
    }

    pub(super) fn listen_to_window(&self) {
        let Some(window) = web_sys::window() else {
            return;
        };
        let mut listeners = Vec::new();
        for event in ["online", "offline", "pagehide"] {
            let weak = Rc::downgrade(&self.inner);
            let closure = Closure::<dyn FnMut(web_sys::Event)>::new(move |_event| {
                let Some(session) = DocSession::upgrade(&weak) else {
                    return;
                };
                match event {
                    "online" => session.input(SyncInput::BrowserOnline),
                    "offline" => session.input(SyncInput::BrowserOffline),
                    // The tab is going away (or into the back/forward cache): its cursor
                    // leaves now. `pagehide` fires in both cases, `beforeunload` not.
                    _ => session.farewell(),
                }
                session.emit();
            });
            if let Some(listener) = WindowListener::add(&window, event, closure) {
                listeners.push(listener);
            }
        }
        self.inner.state.borrow_mut().listeners = listeners;
    }

    /// Tells the others this tab is gone (see [`PresenceTable::farewell`]).
    pub(super) fn farewell(&self) {
        let mut state = self.inner.state.borrow_mut();
        if state.machine.is_open() {
            let update = state.presence.farewell();
            if let Some(socket) = &state.socket {
                socket.send_bytes(&protocol::awareness(update));
            }
        }
    }

    pub(super) fn start_ticker(&self) {
        let weak = Rc::downgrade(&self.inner);
        let ticker = Interval::new(TICK_MS, move || {
            if let Some(session) = DocSession::upgrade(&weak) {
                session.tick();
            }
        });
        self.inner.state.borrow_mut().ticker = Some(ticker);
    }

    pub(super) fn tick(&self) {
        let now = now_ms();
        self.input(SyncInput::Tick {
            now_ms: now,
            online: browser::navigator_online(),
        });
        {
            let mut state = self.inner.state.borrow_mut();
            if state.presence.renew_due(now) && state.machine.is_open() {
                let update = state.presence.local_update(now);
                if let Some(socket) = &state.socket {
                    socket.send_bytes(&protocol::awareness(update));
                }
            }
            state.presence.expire(now);
        }
        // Peers may have expired; the page ignores a view equal to the last one.
        self.emit();
    }
}
