//! The realtime socket: the [`Link`]'s commands carried out, the server's messages, the
//! heartbeat and the `welcome` deadline, resends, and the window's network events.

use super::*;

impl Realtime {
    pub(super) fn listen_to_window(&self) {
        let Some(window) = web_sys::window() else {
            return;
        };
        let mut listeners = Vec::new();
        for event in ["online", "offline", "focus"] {
            let client = Rc::downgrade(&self.inner);
            let closure = Closure::<dyn FnMut(web_sys::Event)>::new(move |_event| {
                if let Some(client) = Realtime::upgrade(&client) {
                    match event {
                        "online" => client.browser_online(),
                        "offline" => client.browser_offline(),
                        _ => client.recheck_session(),
                    }
                }
            });
            if let Some(listener) = WindowListener::add(&window, event, closure) {
                listeners.push(listener);
            }
        }
        self.inner.state.borrow_mut().listeners = listeners;
    }

    /// Feeds the link and does what it asks.
    pub(super) fn input(&self, input: LinkInput) {
        let commands = self.inner.state.borrow_mut().link.handle(input);
        self.run(commands);
    }

    pub(super) fn run(&self, commands: Vec<LinkCommand>) {
        if commands.is_empty() {
            return;
        }
        for command in commands {
            match command {
                LinkCommand::Connect => self.open_socket(),
                LinkCommand::Close => {
                    let mut state = self.inner.state.borrow_mut();
                    state.drop_connection();
                    state.conn = ConnectionState::Offline;
                }
                LinkCommand::RetryIn(delay) => {
                    let mut state = self.inner.state.borrow_mut();
                    state.conn = ConnectionState::Offline;
                    let client = Rc::downgrade(&self.inner);
                    state.retry = Some(Timeout::new(delay, move || {
                        if let Some(client) = Realtime::upgrade(&client) {
                            client.inner.state.borrow_mut().retry = None;
                            client.input(LinkInput::RetryDue);
                        }
                    }));
                }
                LinkCommand::CancelRetry => {
                    let retry = self.inner.state.borrow_mut().retry.take();
                    drop(retry);
                }
            }
        }
        self.changed(Changed::AllTopics);
    }

    /// Opens a new socket in place of any, as the current generation.
    pub(super) fn open_socket(&self) {
        let opened = {
            let mut state = self.inner.state.borrow_mut();
            let state = &mut *state;
            state.drop_connection();
            state.generation += 1;
            let generation = state.generation;
            let on_frame = Rc::downgrade(&self.inner);
            let on_close = Rc::downgrade(&self.inner);
            let events = SocketEvents {
                // The server's `welcome` says the connection is usable, not the open.
                on_open: Box::new(|| {}),
                on_frame: Box::new(move |frame| {
                    if let (Some(client), Frame::Text(text)) = (Realtime::upgrade(&on_frame), frame)
                    {
                        client.on_text(generation, &text);
                    }
                }),
                on_close: Box::new(move |code, reason| {
                    if let Some(client) = Realtime::upgrade(&on_close) {
                        client.on_close(generation, code, &reason);
                    }
                }),
            };
            match Socket::open(&state.url, events) {
                Ok(socket) => {
                    state.socket = Some(socket);
                    let client = Rc::downgrade(&self.inner);
                    state.welcome_deadline = Some(Timeout::new(WELCOME_TIMEOUT_MS, move || {
                        if let Some(client) = Realtime::upgrade(&client) {
                            client.welcome_overdue(generation);
                        }
                    }));
                    state.conn = ConnectionState::Connecting;
                    true
                }
                Err(_) => {
                    state.last_error = Some("This browser refused to open the connection.".into());
                    false
                }
            }
        };
        if !opened {
            self.input(LinkInput::Closed {
                after: AfterClose::Retry,
                jitter: browser::random_unit(),
            });
        }
    }

    pub(super) fn connection_lost(&self, reason: String) {
        {
            let mut state = self.inner.state.borrow_mut();
            state.drop_connection();
            state.last_error = Some(reason);
        }
        self.input(LinkInput::Lost {
            jitter: browser::random_unit(),
        });
    }

    pub(super) fn welcome_overdue(&self, generation: u64) {
        let overdue = {
            let state = self.inner.state.borrow();
            state.generation == generation && state.conn != ConnectionState::Online
        };
        if overdue {
            self.connection_lost("The server did not greet this page in time.".to_owned());
        }
    }

    pub(super) fn browser_online(&self) {
        let probe = {
            let state = self.inner.state.borrow();
            (state.conn == ConnectionState::Online).then_some(state.generation)
        };
        // Forgets the backoff; connects unless a socket is open or opening.
        self.input(LinkInput::BrowserOnline);
        if let Some(generation) = probe {
            // The socket may have died while the network was away: ping it now rather
            // than at the next heartbeat.
            self.heartbeat_tick(generation);
        }
    }

    pub(super) fn browser_offline(&self) {
        {
            let mut state = self.inner.state.borrow_mut();
            state.drop_connection();
            state.conn = ConnectionState::Offline;
            state.last_error = Some("This browser is offline.".to_owned());
        }
        // Closes and waits for the `online` event.
        self.input(LinkInput::BrowserOffline);
        self.changed(Changed::AllTopics);
    }

    pub(super) fn heartbeat_tick(&self, generation: u64) {
        let dead = {
            let mut state = self.inner.state.borrow_mut();
            if state.generation != generation {
                return;
            }
            let now = browser::monotonic_ms();
            let Some((heartbeat, _)) = state.heartbeat.as_mut() else {
                return;
            };
            if heartbeat.is_dead(now) {
                true
            } else {
                let nonce = heartbeat.ping(now);
                state.send(&ClientMessage::Ping { nonce });
                self.arm_pong_deadline(&mut state, now);
                false
            }
        };
        if dead {
            self.connection_lost("The server stopped answering heartbeats.".to_owned());
        }
    }

    /// Sets the pong deadline for the oldest unanswered ping (or clears it when every
    /// ping is answered), so that silence is noticed exactly two intervals after it began
    /// rather than at the next tick.
    pub(super) fn arm_pong_deadline(&self, state: &mut State, now: f64) {
        let due_in = state
            .heartbeat
            .as_ref()
            .and_then(|(heartbeat, _)| heartbeat.dead_in(now));
        let generation = state.generation;
        state.pong_deadline = due_in.map(|due_in| {
            let client = Rc::downgrade(&self.inner);
            // One extra millisecond so that the check never runs just before the line.
            let delay = (due_in.ceil() as u32).saturating_add(1);
            Timeout::new(delay, move || {
                if let Some(client) = Realtime::upgrade(&client) {
                    client.pong_overdue(generation);
                }
            })
        });
    }

    pub(super) fn pong_overdue(&self, generation: u64) {
        let dead = {
            let mut state = self.inner.state.borrow_mut();
            if state.generation != generation {
                return;
            }
            let now = browser::monotonic_ms();
            let dead = state
                .heartbeat
                .as_ref()
                .is_some_and(|(heartbeat, _)| heartbeat.is_dead(now));
            if !dead {
                self.arm_pong_deadline(&mut state, now);
            }
            dead
        };
        if dead {
            self.connection_lost("The server stopped answering heartbeats.".to_owned());
        }
    }

    pub(super) fn on_close(&self, generation: u64, code: u16, reason: &str) {
        {
            let mut state = self.inner.state.borrow_mut();
            if state.generation != generation {
                return;
            }
            let was_welcomed = state.connection.is_some();
            state.drop_connection();
            state.conn = ConnectionState::Offline;
            state.last_error = Some(if browser::navigator_online() {
                describe_close(code, reason, was_welcomed)
            } else {
                "This browser is offline.".to_owned()
            });
        }
        self.input(LinkInput::Closed {
            after: after_close(code),
            jitter: browser::random_unit(),
        });
        match code {
            close_code::SESSION_REVOKED => self.refresh_session(true),
            // The new role may allow more or less: the page learns it, and the new
            // connection carries it.
            close_code::ACCESS_CHANGED => self.refresh_session(false),
            _ => {}
        }
        self.changed(Changed::AllTopics);
    }

    pub(super) fn on_text(&self, generation: u64, text: &str) {
        if self.inner.state.borrow().generation != generation {
            return;
        }
        match serde_json::from_str::<ServerMessage>(text) {
            Ok(message) => self.on_message(generation, message),
            Err(error) => {
                self.inner.state.borrow_mut().last_error = Some(format!(
                    "The server sent a message this page cannot read ({error})."
                ));
                self.changed(Changed::Status);
            }
        }
    }

    pub(super) fn on_message(&self, generation: u64, message: ServerMessage) {
        match message {
            ServerMessage::Welcome {
                connection_id,
                session_id,
                instance_id,
                heartbeat_ms,
            } => self.on_welcome(
                generation,
                Connection {
                    connection_id,
                    session_id,
                    instance_id,
                    heartbeat_ms,
                },
            ),
            ServerMessage::Subscribed {
                topic,
                head,
                truncated,
            } => {
                if let Some(log) = self.inner.state.borrow_mut().topics.get_mut(&topic) {
                    log.subscribed(head, truncated);
                }
                self.changed(Changed::Topic(topic));
            }
            ServerMessage::Unsubscribed { .. } => {}
            ServerMessage::Event(event) => self.on_event(event),
            ServerMessage::Ack {
                op_id, topic, seq, ..
            } => self.on_ack(op_id, topic, seq),
            ServerMessage::Error {
                code,
                message,
                op_id,
                topic,
            } => self.on_error(code, message, op_id, topic),
            ServerMessage::Pong { nonce } => {
                {
                    let mut state = self.inner.state.borrow_mut();
                    let now = browser::monotonic_ms();
                    if let Some(rtt) = state
                        .heartbeat
                        .as_mut()
                        .and_then(|(heartbeat, _)| heartbeat.pong(nonce, now))
                    {
                        state.rtt_ms = Some(rtt);
                        self.arm_pong_deadline(&mut state, now);
                    }
                }
                self.changed(Changed::Status);
            }
        }
    }

    pub(super) fn on_welcome(&self, generation: u64, connection: Connection) {
        let session_differs = {
            let mut state = self.inner.state.borrow_mut();
            let state = &mut *state;
            state.conn = ConnectionState::Online;
            // Only a scheduled retry can be cancelled here: there is none while a socket
            // is open, so nothing else is to be done.
            state.link.handle(LinkInput::Ready);
            state.retry = None;
            state.welcome_deadline = None;
            state.last_error = None;
            let session_differs = state.session_id.as_deref() != Some(&connection.session_id);

            let mut heartbeat = Heartbeat::new(connection.heartbeat_ms);
            let client = Rc::downgrade(&self.inner);
            let every = u32::try_from(heartbeat.every_ms()).unwrap_or(u32::MAX);
            let interval = Interval::new(every, move || {
                if let Some(client) = Realtime::upgrade(&client) {
                    client.heartbeat_tick(generation);
                }
            });
            // A first ping right away gives the round-trip time without waiting.
            let now = browser::monotonic_ms();
            let nonce = heartbeat.ping(now);
            send(&state.socket, &ClientMessage::Ping { nonce });
            state.heartbeat = Some((heartbeat, interval));
            self.arm_pong_deadline(state, now);
            state.connection = Some(connection);

            for log in state.topics.values_mut() {
                let since = log.subscribe_since();
                log.subscribing(since);
                send(
                    &state.socket,
                    &ClientMessage::Subscribe {
                        topic: log.topic().to_owned(),
                        since,
                    },
                );
            }
            session_differs
        };
        self.changed(Changed::AllTopics);
        if session_differs {
            // The socket's session is not the one the page shows (it changed while this
            // tab was not listening): learn who we are, without reconnecting.
            let client = self.clone();
            spawn_local(async move { client.fetch_session().await });
        }
        self.replay_outbox(generation);
    }

    pub(super) fn on_event(&self, event: Event) {
        let topic = event.topic.clone();
        let op_id = event.op_id.clone();
        let (fresh, settled_own) = {
            let mut state = self.inner.state.borrow_mut();
            let Some(log) = state.topics.get_mut(&topic) else {
                return;
            };
            let fresh = log.event(event);
            // Our own op came back as an event: it is applied even if its ack was lost
            // with a connection.
            let settled_own = state.settle(&op_id).is_some();
            (fresh, settled_own)
        };
        if settled_own {
            self.forget_stored(vec![op_id]);
        }
        if fresh || settled_own {
            self.changed(Changed::Topic(topic));
        }
    }

    pub(super) fn on_ack(&self, op_id: String, topic: String, seq: u64) {
        {
            let mut state = self.inner.state.borrow_mut();
            if let Some(op) = state.settle(&op_id) {
                if let Some(log) = state.topics.get_mut(&op.topic) {
                    log.acknowledged(Event {
                        topic: op.topic.clone(),
                        seq,
                        op_id: op.op_id.clone(),
                        payload: op.payload,
                        at_ms: browser::now_ms(),
                    });
                }
            }
        }
        // Deleted even when this tab did not queue it: it may be another tab's op,
        // replayed from storage.
        self.forget_stored(vec![op_id]);
        self.changed(Changed::Topic(topic));
    }

    pub(super) fn on_error(
        &self,
        code: String,
        message: String,
        op_id: Option<String>,
        topic: Option<String>,
    ) {
        let permanent = is_permanent_error(&code);
        let mut forget = None;
        {
            let mut state = self.inner.state.borrow_mut();
            let state = &mut *state;
            match op_id {
                Some(op_id) if permanent => {
                    let op = state.settle(&op_id);
                    let topic = op.as_ref().map(|op| op.topic.clone()).or(topic);
                    match topic.and_then(|topic| state.topics.get_mut(&topic)) {
                        Some(log) => log.rejected(Rejection {
                            op_id: op_id.clone(),
                            code,
                            message,
                            payload: op.map(|op| op.payload).unwrap_or_default(),
                        }),
                        None => state.last_error = Some(message),
                    }
                    forget = Some(op_id);
                }
                Some(_) => {
                    state.last_error = Some(format!("{message} (retrying shortly)"));
                    self.schedule_resend(state);
                }
                None => {
                    match topic.and_then(|topic| state.topics.get_mut(&topic)) {
                        Some(log) => log.failed(message),
                        None => state.last_error = Some(message),
                    }
                    if !permanent {
                        self.schedule_resend(state);
                    }
                }
            }
        }
        if let Some(op_id) = forget {
            self.forget_stored(vec![op_id]);
        }
        self.changed(Changed::AllTopics);
    }

    /// After a passing error, tries again in [`RESEND_AFTER_MS`] on the same connection
    /// (a reconnect would retry anyway).
    pub(super) fn schedule_resend(&self, state: &mut State) {
        if state.resend.is_some() {
            return;
        }
        let client = Rc::downgrade(&self.inner);
        let generation = state.generation;
        state.resend = Some(Timeout::new(RESEND_AFTER_MS, move || {
            if let Some(client) = Realtime::upgrade(&client) {
                client.resend(generation);
            }
        }));
    }

    /// Subscribes again to the topics a passing error left unsubscribed, and sends the
    /// outbox again.
    pub(super) fn resend(&self, generation: u64) {
        {
            let mut state = self.inner.state.borrow_mut();
            let state = &mut *state;
            state.resend = None;
            if state.generation != generation || state.conn != ConnectionState::Online {
                return;
            }
            for log in state.topics.values_mut() {
                if !log.is_subscribed() && !log.is_requested() {
                    let since = log.subscribe_since();
                    log.subscribing(since);
                    send(
                        &state.socket,
                        &ClientMessage::Subscribe {
                            topic: log.topic().to_owned(),
                            since,
                        },
                    );
                }
            }
            for op in state.outbox.ops() {
                send(&state.socket, &State::publish_message(op));
            }
        }
        self.changed(Changed::AllTopics);
    }
}
