//! The home page: the catalogue of Meridian's systems that exist in this build
//! (`meridian_shared::systems::SYSTEMS`), as cards linking to each system's page.
//!
//! Invariant: only systems in the catalogue are shown; with none, the page says so
//! plainly and points to the status page instead of showing anything made up.

use meridian_shared::systems::{SystemInfo, SYSTEMS};
use yew::prelude::*;
use yew_router::prelude::*;

use crate::app::Route;

/// The app route a system's `path` leads to, when the app has one; `None` sends the
/// browser to the server for the path.
pub fn internal_route(path: &str) -> Option<Route> {
    Route::recognize(path).filter(|route| *route != Route::NotFound)
}

#[derive(Properties, PartialEq)]
struct SystemCardProps {
    system: SystemInfo,
}

#[component]
fn SystemCard(props: &SystemCardProps) -> Html {
    let navigator = use_navigator();
    let system = props.system;
    let onclick = Callback::from(move |event: MouseEvent| {
        let plain_click =
            !(event.meta_key() || event.ctrl_key() || event.shift_key() || event.alt_key());
        if let (true, Some(route), Some(navigator)) =
            (plain_click, internal_route(system.path), &navigator)
        {
            event.prevent_default();
            navigator.push(&route);
        }
    });
    html! {
        <li class="card system-card" data-testid="system-card">
            <a href={system.path} {onclick}>
                <h2>{ system.name }</h2>
                <p>{ system.summary }</p>
                <span class="card-cta" aria-hidden="true">{ "Open →" }</span>
            </a>
        </li>
    }
}

/// The home page.
#[component]
pub fn HomePage() -> Html {
    html! {
        <section class="page">
            <div class="hero">
                <h1>{ "Meridian" }</h1>
                <p class="lead">
                    { "Distributed systems that run for real: in your browser, on the server, and across every tab you open." }
                </p>
            </div>
            if SYSTEMS.is_empty() {
                <div class="empty-state" data-testid="systems-empty">
                    <h2>{ "No systems are live yet" }</h2>
                    <p>
                        { "Each of Meridian's systems appears here once it works end to end: its API, its page and its tests." }
                    </p>
                    <p>
                        { "Meanwhile, the " }
                        <Link<Route> to={Route::Status}>{ "status page" }</Link<Route>>
                        { " shows the server's health and a live lobby you can post to from several tabs." }
                    </p>
                </div>
            } else {
                <>
                    <h2 class="section-title">{ "Systems" }</h2>
                    <ul class="cards" data-testid="systems">
                        { for SYSTEMS.iter().map(|system| html! {
                            <SystemCard key={system.path} system={*system} />
                        }) }
                    </ul>
                    <p class="muted">
                        { "Server health and the live channel are on the " }
                        <Link<Route> to={Route::Status}>{ "status page" }</Link<Route>>
                        { "." }
                    </p>
                </>
            }
        </section>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_real_routes_are_followed_inside_the_app() {
        assert_eq!(internal_route("/status"), Some(Route::Status));
        assert_eq!(internal_route("/not-yet-a-page"), None);
    }

    #[test]
    fn every_listed_system_has_an_absolute_path_and_words() {
        for system in SYSTEMS {
            assert!(system.path.starts_with('/'), "{}", system.path);
            assert!(!system.name.is_empty());
            assert!(!system.summary.is_empty());
        }
    }
}
