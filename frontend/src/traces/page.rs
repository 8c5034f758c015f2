//! The tracing pages: `/tracing` (search, the service map) and `/tracing/{trace_id}`
//! (the waterfall: a collapsible span tree, bars on one time axis, the critical path
//! highlighted, a span's attributes, events and links beside it).
//!
//! Invariants: only the rows in the viewport (plus an overscan) exist in the DOM
//! (`[data-testid=waterfall-row]`), so a 100,000-span trace renders as fast as a small
//! one; every failure is shown with the server's message, never swallowed.

use std::rc::Rc;

use meridian_shared::traces::{
    ServiceDependency, SpanStatus, TraceSummary, TraceTree, TracedService,
};
use wasm_bindgen_futures::spawn_local;
use web_sys::HtmlElement;
use yew::prelude::*;
use yew_router::prelude::*;

use super::api::{self, SearchForm};
use super::state::{Waterfall, WaterfallAction, ROW_HEIGHT};
use crate::app::Route;
use crate::browser::input_value;
use crate::components::Spinner;

fn duration_text(us: i64) -> String {
    if us >= 1_000_000 {
        format!("{:.2} s", us as f64 / 1e6)
    } else if us >= 1_000 {
        format!("{:.2} ms", us as f64 / 1e3)
    } else {
        format!("{us} µs")
    }
}

#[component]
pub fn TracingPage() -> Html {
    let results = use_state(|| None::<Result<Vec<TraceSummary>, String>>);
    let services = use_state(Vec::<TracedService>::new);
    let edges = use_state(Vec::<ServiceDependency>::new);
    let service = use_node_ref();
    let operation = use_node_ref();
    let tags = use_node_ref();
    let status = use_node_ref();
    let min_ms = use_node_ref();
    {
        let services = services.clone();
        let edges = edges.clone();
        use_effect_with((), move |_| {
            spawn_local(async move {
                if let Ok(list) = api::services().await {
                    services.set(list.services);
                }
                if let Ok(deps) = api::dependencies().await {
                    edges.set(deps.dependencies);
                }
            });
        });
    }
    let run_search = {
        let results = results.clone();
        let refs = (
            service.clone(),
            operation.clone(),
            tags.clone(),
            status.clone(),
            min_ms.clone(),
        );
        Callback::from(move |e: SubmitEvent| {
            e.prevent_default();
            let form = SearchForm {
                service: input_value(&refs.0),
                operation: input_value(&refs.1),
                tags: input_value(&refs.2),
                status: input_value(&refs.3),
                min_duration_ms: input_value(&refs.4),
            };
            let results = results.clone();
            spawn_local(async move {
                let answer = api::search(&form).await;
                results.set(Some(answer.map(|r| r.traces).map_err(|e| e.message())));
            });
        })
    };
    html! {
        <section class="page tracing-page">
            <header class="page-header">
                <h1>{ "Tracing" }</h1>
                <p class="lead">{ "Every span from every service, found by trace id in milliseconds. Send OTLP to /v1/traces or Zipkin to /api/v2/spans." }</p>
            </header>
            <form class="tracing-search" onsubmit={run_search} data-testid="trace-search">
                <label>{ "Service" }
                    <select ref={service} data-testid="search-service">
                        <option value="">{ "any" }</option>
                        { for services.iter().map(|s| html! { <option value={s.name.clone()}>{ &s.name }</option> }) }
                    </select>
                </label>
                <label>{ "Operation" }<input ref={operation} type="text" placeholder="GET /api/..." /></label>
                <label>{ "Attributes" }<input ref={tags} type="text" placeholder="http.status_code=500" /></label>
                <label>{ "Status" }
                    <select ref={status}>
                        <option value="">{ "any" }</option>
                        <option value="error">{ "error" }</option>
                        <option value="ok">{ "ok" }</option>
                    </select>
                </label>
                <label>{ "Min duration (ms)" }<input ref={min_ms} type="text" inputmode="decimal" /></label>
                <button type="submit" data-testid="search-submit">{ "Search" }</button>
            </form>
            {
                match &*results {
                    None => html! {},
                    Some(Err(message)) => html! { <p class="error" role="alert">{ message }</p> },
                    Some(Ok(list)) if list.is_empty() => html! { <p data-testid="trace-results-empty">{ "No trace matches." }</p> },
                    Some(Ok(list)) => html! {
                        <ul class="tracing-results" data-testid="trace-results">
                            { for list.iter().map(|t| html! {
                                <li data-testid="trace-result" data-trace-id={t.trace_id.clone()}>
                                    <Link<Route> to={Route::Trace { trace_id: t.trace_id.clone() }}>
                                        <strong>{ format!("{}: {}", t.root_service, t.root_name) }</strong>
                                    </Link<Route>>
                                    <span>{ format!(" {} spans · {} · {} services", t.span_count, duration_text(t.duration_us), t.services.len()) }</span>
                                    { if t.error_count > 0 { html! { <span class="tracing-error">{ format!(" · {} errors", t.error_count) }</span> } } else { html! {} } }
                                </li>
                            }) }
                        </ul>
                    },
                }
            }
            <h2>{ "Service map" }</h2>
            <ul class="tracing-map" data-testid="service-map">
                { for edges.iter().map(|e| html! {
                    <li>{ format!("{} → {}: {} calls", e.parent, e.child, e.call_count) }
                        { if e.error_count > 0 { html! { <span class="tracing-error">{ format!(", {} errors", e.error_count) }</span> } } else { html! {} } }
                    </li>
                }) }
            </ul>
        </section>
    }
}

#[derive(Properties, PartialEq)]
pub struct TracePageProps {
    pub trace_id: String,
}

#[component]
pub fn TracePage(props: &TracePageProps) -> Html {
    let loaded = use_state(|| None::<Result<Rc<TraceTree>, String>>);
    {
        let loaded = loaded.clone();
        use_effect_with(props.trace_id.clone(), move |trace_id| {
            loaded.set(None);
            let trace_id = trace_id.clone();
            spawn_local(async move {
                let answer = api::trace(&trace_id).await;
                loaded.set(Some(answer.map(Rc::new).map_err(|e| e.message())));
            });
        });
    }
    html! {
        <section class="page tracing-page">
            <header class="page-header">
                <h1>{ "Trace " }<code>{ &props.trace_id }</code></h1>
                <Link<Route> to={Route::Tracing}>{ "← search" }</Link<Route>>
            </header>
            {
                match &*loaded {
                    None => html! { <Spinner label="Loading the trace" /> },
                    Some(Err(message)) => html! { <p class="error" role="alert">{ message }</p> },
                    Some(Ok(tree)) => html! { <WaterfallView tree={tree.clone()} /> },
                }
            }
        </section>
    }
}

#[derive(Properties, PartialEq)]
struct WaterfallProps {
    tree: Rc<TraceTree>,
}

#[component]
fn WaterfallView(props: &WaterfallProps) -> Html {
    let model = use_reducer(Waterfall::default);
    let scroller = use_node_ref();
    {
        let model = model.clone();
        let scroller = scroller.clone();
        use_effect_with(props.tree.clone(), move |tree| {
            model.dispatch(WaterfallAction::Load(tree.clone()));
            let height = scroller
                .cast::<HtmlElement>()
                .map_or(600.0, |el| el.client_height() as f64);
            model.dispatch(WaterfallAction::Scroll { top: 0.0, height });
        });
    }
    let on_scroll = {
        let model = model.clone();
        Callback::from(move |e: Event| {
            let el: HtmlElement = e.target_unchecked_into();
            model.dispatch(WaterfallAction::Scroll {
                top: el.scroll_top() as f64,
                height: el.client_height() as f64,
            });
        })
    };
    let Some(tree) = model.tree.clone() else {
        return html! { <Spinner label="Laying out spans" /> };
    };
    let window = model.window();
    let rows = window.clone().map(|pos| {
        let i = model.visible[pos];
        let span = &tree.spans[i];
        let (left, width) = model.bar(i);
        let mut class = classes!("tracing-row");
        if span.critical {
            class.push("critical");
        }
        if span.status == SpanStatus::Error {
            class.push("error");
        }
        if model.selected == Some(i) {
            class.push("selected");
        }
        let toggle = {
            let model = model.clone();
            Callback::from(move |e: MouseEvent| {
                e.stop_propagation();
                model.dispatch(WaterfallAction::Toggle(i));
            })
        };
        let select = {
            let model = model.clone();
            Callback::from(move |_| model.dispatch(WaterfallAction::Select(i)))
        };
        let marker = if !model.has_children(i) {
            "·"
        } else if model.collapsed.contains(&i) {
            "▸"
        } else {
            "▾"
        };
        html! {
            <div class={class} data-testid="waterfall-row" data-span-id={span.span_id.clone()}
                 style={format!("top:{}px;height:{}px", pos as f64 * ROW_HEIGHT, ROW_HEIGHT)}
                 onclick={select}>
                <span class="tracing-label" style={format!("padding-left:{}px", (span.depth.min(40)) * 12)}>
                    <button class="tracing-toggle" onclick={toggle} aria-label="collapse or expand">{ marker }</button>
                    <span class="tracing-service">{ &span.service }</span>{ " " }{ &span.name }
                </span>
                <span class="tracing-track">
                    <span class="tracing-bar" style={format!("left:{left:.3}%;width:{width:.3}%")}
                          title={duration_text(span.duration_us)}></span>
                </span>
            </div>
        }
    });
    let details = model.selected.map(|i| {
        let span = &tree.spans[i];
        html! {
            <aside class="tracing-details" data-testid="span-details">
                <h3>{ format!("{}: {}", span.service, span.name) }</h3>
                <p>{ format!("{} · {} · {:?}", duration_text(span.duration_us), span.kind, span.status) }
                   { if span.skew_us != 0 { format!(" · clock skew adjusted by {}", duration_text(span.skew_us)) } else { String::new() } }</p>
                <table>
                    { for span.attributes.iter().map(|a| html! { <tr><th>{ &a.key }</th><td>{ &a.value }</td></tr> }) }
                </table>
                { if span.events.is_empty() { html! {} } else { html! {
                    <><h4>{ "Events" }</h4><ul>{ for span.events.iter().map(|e| html! { <li>{ format!("{} at {}", e.name, duration_text(e.time_us - tree.start_us)) }</li> }) }</ul></>
                } } }
                { if span.links.is_empty() { html! {} } else { html! {
                    <><h4>{ "Links" }</h4><ul>{ for span.links.iter().map(|l| html! {
                        <li><Link<Route> to={Route::Trace { trace_id: l.trace_id.clone() }}>{ format!("{} / {}", l.trace_id, l.span_id) }</Link<Route>></li>
                    }) }</ul></>
                } } }
            </aside>
        }
    });
    html! {
        <div class="tracing-trace" data-testid="waterfall" data-span-count={tree.spans.len().to_string()}>
            <p class="tracing-summary">
                { format!("{} spans · {} services · {} · {} errors", tree.spans.len(), tree.services.len(), duration_text(tree.duration_us), tree.error_count) }
                { if tree.orphan_count > 0 { format!(" · {} orphans", tree.orphan_count) } else { String::new() } }
            </p>
            <div class="tracing-waterfall" ref={scroller} onscroll={on_scroll}>
                <div class="tracing-rows" style={format!("height:{}px", model.visible.len() as f64 * ROW_HEIGHT)}>
                    { for rows }
                </div>
            </div>
            { details.unwrap_or_default() }
        </div>
    }
}
