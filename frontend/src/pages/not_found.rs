//! The page for any path that is not one of the app's routes.

use yew::prelude::*;
use yew_router::prelude::*;

use crate::app::Route;

/// "Page not found", with the way back.
#[component]
pub fn NotFoundPage() -> Html {
    let location = use_location();
    let path = location
        .map(|location| location.path().to_owned())
        .unwrap_or_default();
    html! {
        <section class="page narrow" data-testid="not-found">
            <p class="eyebrow">{ "404" }</p>
            <h1>{ "Page not found" }</h1>
            <p class="lead">
                { "There is no page at " }
                <code>{ path }</code>
                { "." }
            </p>
            <p>
                <Link<Route> to={Route::Home} classes="button button-primary">{ "Go to the home page" }</Link<Route>>
            </p>
        </section>
    }
}
