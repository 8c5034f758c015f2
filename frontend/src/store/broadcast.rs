//! The BroadcastChannel `meridian`, through which the tabs of one browser tell each other
//! what changed under them:
//! - `auth_changed`: the session cookie changed (sign-in, sign-up, sign-out). The other
//!   tabs refetch `/api/auth/me` and reconnect their socket, which still carries the old
//!   session.
//! - `outbox_changed`: the IndexedDB outbox changed (an op was added, acknowledged or
//!   refused). The other tabs reread it to refresh their pending items.
//!
//! Messages are JSON text: `{"type":"auth_changed"}`, `{"type":"outbox_changed"}`.
//! A channel never hears its own messages; other channels of the same tab do, so the
//! app opens exactly one.

use serde::{Deserialize, Serialize};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use web_sys::{BroadcastChannel, MessageEvent};

/// The channel's name, shared by every tab of the app.
pub const CHANNEL_NAME: &str = "meridian";

/// A message between tabs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum TabMessage {
    AuthChanged,
    OutboxChanged,
}

impl TabMessage {
    pub fn encode(self) -> String {
        serde_json::to_string(&self).unwrap_or_default()
    }

    /// Parses a message; `None` for anything else (a newer app version's message, say).
    pub fn decode(text: &str) -> Option<TabMessage> {
        serde_json::from_str(text).ok()
    }
}

/// This tab's end of the channel. Dropping it closes the channel.
pub struct TabChannel {
    channel: BroadcastChannel,
    _on_message: Closure<dyn FnMut(MessageEvent)>,
}

impl TabChannel {
    /// Opens the channel; `on_message` hears the other tabs' messages. Fails where the
    /// browser has no BroadcastChannel.
    pub fn open(on_message: impl Fn(TabMessage) + 'static) -> Result<TabChannel, String> {
        let channel = BroadcastChannel::new(CHANNEL_NAME)
            .map_err(|_| "this browser has no BroadcastChannel".to_owned())?;
        let on_message = Closure::<dyn FnMut(MessageEvent)>::new(move |event: MessageEvent| {
            if let Some(message) = event
                .data()
                .as_string()
                .as_deref()
                .and_then(TabMessage::decode)
            {
                on_message(message);
            }
        });
        channel.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        Ok(TabChannel {
            channel,
            _on_message: on_message,
        })
    }

    /// Tells the other tabs.
    pub fn post(&self, message: TabMessage) {
        let _ = self
            .channel
            .post_message(&JsValue::from_str(&message.encode()));
    }
}

impl Drop for TabChannel {
    fn drop(&mut self) {
        self.channel.set_onmessage(None);
        self.channel.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_typed_json() {
        assert_eq!(
            TabMessage::AuthChanged.encode(),
            r#"{"type":"auth_changed"}"#
        );
        assert_eq!(
            TabMessage::OutboxChanged.encode(),
            r#"{"type":"outbox_changed"}"#
        );
        assert_eq!(
            TabMessage::decode(r#"{"type":"outbox_changed"}"#),
            Some(TabMessage::OutboxChanged)
        );
        assert_eq!(TabMessage::decode(r#"{"type":"something_new"}"#), None);
        assert_eq!(TabMessage::decode("not json"), None);
    }
}
