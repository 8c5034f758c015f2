//! Widgets that several pages share.

use yew::prelude::*;

use crate::net::realtime::ConnectionState;

#[derive(Properties, PartialEq)]
pub struct StatePillProps {
    pub state: ConnectionState,
    /// The element's `data-testid`.
    pub testid: AttrValue,
    /// A longer explanation, shown as a tooltip.
    #[prop_or_default]
    pub detail: Option<AttrValue>,
}

/// A coloured pill saying whether the realtime channel is online, connecting or
/// offline. Its `data-state` is exactly `online`, `connecting` or `offline`; its text is
/// "Online", "Connecting…" or "Offline".
#[component]
pub fn StatePill(props: &StatePillProps) -> Html {
    let state = props.state;
    html! {
        <span
            class={classes!("pill", format!("pill-{}", state.as_str()))}
            data-testid={props.testid.clone()}
            data-state={state.as_str()}
            title={props.detail.clone()}
            role="status"
        >
            <span class="pill-dot" aria-hidden="true"></span>
            { state.label() }
        </span>
    }
}

#[derive(Properties, PartialEq)]
pub struct SpinnerProps {
    /// What is being waited for, for screen readers and as visible text.
    pub label: AttrValue,
}

/// A small inline loading indicator with its reason.
#[component]
pub fn Spinner(props: &SpinnerProps) -> Html {
    html! {
        <span class="loading" role="status" aria-live="polite">
            <span class="spinner" aria-hidden="true"></span>
            { props.label.clone() }
        </span>
    }
}
