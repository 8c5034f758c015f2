//! The `/eta` page: the map on a canvas, the draggable route ends (A and B) with an
//! instant preview computed in wasm, the server's ETA once a drag ends, traffic
//! refreshed every 2 s, and a simulated trip whose ETA the server updates.
//!
//! Test hooks: `[data-testid=eta-map]` (the canvas, `data-ready="true"` once the engine
//! is built; `data-ends` = the pixels of A and B, `ax,ay,bx,by`), `eta-preview` (the preview's ETA, `data-eta-s`), `eta-server` (the
//! server's ETA, `data-eta-s`), `eta-source`, `eta-trip-start`, `eta-trip`.

use std::cell::RefCell;
use std::rc::Rc;

use gloo_timers::callback::Interval;
use meridian_shared::eta::wire::{TripEvent, TripView, TRIP_EVENT};
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::spawn_local;
use web_sys::{CanvasRenderingContext2d, HtmlCanvasElement};
use yew::prelude::*;

use super::api;
use super::model::{format_eta, traffic_colour, Engine, Preview, Projection};
use crate::net::realtime::{Realtime, TopicView, TopicWatch};
use crate::session::SessionState;

pub const WIDTH: f64 = 880.0;
pub const HEIGHT: f64 = 620.0;
const TRAFFIC_EVERY_MS: u32 = 2_000;
const TRIP_STEP_MS: u32 = 1_000;
/// A press this close to an end (pixels) picks it up.
const GRAB_PX: f64 = 16.0;

/// Everything the canvas shows, outside Yew's state (it changes on every mouse move).
#[derive(Default)]
struct Scene {
    engine: Option<Engine>,
    projection: Option<Projection>,
    speed_pct: Vec<u8>,
    ends: [[f64; 2]; 2],
    dragging: Option<usize>,
    route: Vec<[f64; 2]>,
    trip_at: Option<[f64; 2]>,
}

fn context(canvas: &NodeRef) -> Option<CanvasRenderingContext2d> {
    canvas
        .cast::<HtmlCanvasElement>()?
        .get_context("2d")
        .ok()??
        .dyn_into()
        .ok()
}

fn draw(canvas: &NodeRef, scene: &Scene) {
    let (Some(ctx), Some(engine), Some(p)) = (context(canvas), &scene.engine, &scene.projection)
    else {
        return;
    };
    ctx.set_fill_style_str("#fbfaf7");
    ctx.fill_rect(0.0, 0.0, WIDTH, HEIGHT);
    let graph = &engine.graph;
    ctx.set_line_width(1.2);
    // Roads by colour, one path per colour.
    for colour in ["#9e9e9e", "#f9a825", "#ef6c00", "#c62828", "#222222"] {
        ctx.begin_path();
        for v in 0..graph.node_count() as u32 {
            let a = graph.coord(v);
            for arc in graph.arcs_out(v) {
                let pct = scene.speed_pct.get(arc as usize).copied().unwrap_or(100);
                if traffic_colour(pct) != colour {
                    continue;
                }
                let b = graph.coord(graph.head(arc));
                let (x0, y0) = p.to_px(a.lat, a.lon);
                let (x1, y1) = p.to_px(b.lat, b.lon);
                ctx.move_to(x0, y0);
                ctx.line_to(x1, y1);
            }
        }
        ctx.set_stroke_style_str(colour);
        ctx.stroke();
    }
    if scene.route.len() > 1 {
        ctx.begin_path();
        for (i, at) in scene.route.iter().enumerate() {
            let (x, y) = p.to_px(at[0], at[1]);
            if i == 0 {
                ctx.move_to(x, y);
            } else {
                ctx.line_to(x, y);
            }
        }
        ctx.set_line_width(4.0);
        ctx.set_stroke_style_str("#1565c0");
        ctx.stroke();
    }
    for (i, end) in scene.ends.iter().enumerate() {
        let (x, y) = p.to_px(end[0], end[1]);
        ctx.begin_path();
        let _ = ctx.arc(x, y, 8.0, 0.0, std::f64::consts::TAU);
        ctx.set_fill_style_str(if i == 0 { "#2e7d32" } else { "#6a1b9a" });
        ctx.fill();
        ctx.set_fill_style_str("#ffffff");
        let _ = ctx.fill_text(if i == 0 { "A" } else { "B" }, x - 4.0, y + 4.0);
    }
    if let Some(at) = scene.trip_at {
        let (x, y) = p.to_px(at[0], at[1]);
        ctx.begin_path();
        let _ = ctx.arc(x, y, 6.0, 0.0, std::f64::consts::TAU);
        ctx.set_fill_style_str("#ff6f00");
        ctx.fill();
    }
}

/// The realtime topic the server pushes this session's trips to.
fn owner_topic(session: &SessionState) -> Option<String> {
    match session {
        SessionState::Known(me) => Some(match &me.user {
            Some(user) => format!("user:{}", user.id),
            None => format!("session:{}", me.session_id),
        }),
        _ => None,
    }
}

#[component]
pub fn EtaPage() -> Html {
    let canvas = use_node_ref();
    let scene = use_mut_ref(Scene::default);
    let ready = use_state(|| false);
    let source = use_state(|| None::<(String, bool, usize, usize)>);
    let error = use_state(|| None::<String>);
    let preview = use_state(|| None::<Preview>);
    let server_eta = use_state(|| None::<Result<f64, String>>);
    let trip = use_state(|| None::<TripView>);
    let trip_timer = use_mut_ref(|| None::<Interval>);
    let realtime = use_context::<Realtime>();
    let session = use_context::<SessionState>().unwrap_or_default();

    // Asks the server for the route between the ends.
    let ask_server = {
        let scene = scene.clone();
        let server_eta = server_eta.clone();
        Callback::from(move |_: ()| {
            let [from, to] = scene.borrow().ends;
            let server_eta = server_eta.clone();
            spawn_local(async move {
                server_eta.set(Some(
                    api::route(from, to)
                        .await
                        .map(|r| r.eta_s)
                        .map_err(|e| e.message()),
                ));
            });
        })
    };
    // The instant preview, computed here.
    let recompute = {
        let scene = scene.clone();
        let canvas = canvas.clone();
        let preview = preview.clone();
        Rc::new(move || {
            let mut s = scene.borrow_mut();
            let ends = s.ends;
            let answer = s.engine.as_mut().and_then(|e| e.preview(ends[0], ends[1]));
            s.route = answer.as_ref().map(|a| a.path.clone()).unwrap_or_default();
            draw(&canvas, &s);
            preview.set(answer);
        })
    };

    // Load the map, build the engine, then follow the traffic.
    {
        let scene = scene.clone();
        let ready = ready.clone();
        let source = source.clone();
        let error = error.clone();
        let recompute = recompute.clone();
        let ask_server = ask_server.clone();
        use_effect_with((), move |_| {
            let alive = Rc::new(RefCell::new(true));
            let alive_load = alive.clone();
            let scene_load = scene.clone();
            let recompute_load = recompute.clone();
            spawn_local(async move {
                let map = match api::map().await {
                    Ok(map) => map,
                    Err(err) => {
                        error.set(Some(err.message()));
                        return;
                    }
                };
                if !*alive_load.borrow() {
                    return;
                }
                match Engine::new(&map) {
                    Ok(engine) => {
                        let b = map.bounds;
                        let mut s = scene_load.borrow_mut();
                        s.projection = Some(Projection::fit(b, WIDTH, HEIGHT));
                        let at = |f: f64| [b[0] + f * (b[2] - b[0]), b[1] + f * (b[3] - b[1])];
                        s.ends = [at(0.3), at(0.7)];
                        s.engine = Some(engine);
                    }
                    Err(err) => {
                        error.set(Some(err.to_string()));
                        return;
                    }
                }
                source.set(Some((
                    map.source,
                    map.synthetic,
                    map.turn_restrictions_applied,
                    map.turn_restrictions_ignored,
                )));
                ready.set(true);
                recompute_load();
                ask_server.emit(());
            });
            let scene_traffic = scene.clone();
            let traffic_timer = Interval::new(TRAFFIC_EVERY_MS, move || {
                let scene = scene_traffic.clone();
                let recompute = recompute.clone();
                spawn_local(async move {
                    let Ok(traffic) = api::traffic().await else {
                        return;
                    };
                    {
                        let mut s = scene.borrow_mut();
                        if let Some(engine) = s.engine.as_mut() {
                            engine.set_traffic(&traffic.speed_pct);
                        }
                        s.speed_pct = traffic.speed_pct;
                    }
                    recompute();
                });
            });
            move || {
                *alive.borrow_mut() = false;
                drop(traffic_timer);
            }
        });
    }

    // The trip's pushed updates.
    {
        let trip = trip.clone();
        let topic = owner_topic(&session);
        use_effect_with(topic.clone(), move |_| {
            let watch: Option<TopicWatch> = match (realtime, topic) {
                (Some(realtime), Some(topic)) => Some(realtime.watch(
                    &topic,
                    false,
                    Callback::from(move |view: TopicView| {
                        let newest = view.events.iter().rev().find_map(|event| {
                            serde_json::from_value::<TripEvent>(event.payload.clone())
                                .ok()
                                .filter(|e| e.kind == TRIP_EVENT)
                        });
                        if let Some(update) = newest {
                            let current = (*trip).clone();
                            let newer = current.as_ref().is_none_or(|t| {
                                t.trip_id == update.trip.trip_id
                                    && update.trip.updated_at_ms >= t.updated_at_ms
                            });
                            if newer && current.is_some() {
                                trip.set(Some(update.trip));
                            }
                        }
                    }),
                )),
                _ => None,
            };
            move || drop(watch)
        });
    }

    let grab = {
        let scene = scene.clone();
        Callback::from(move |e: MouseEvent| {
            let mut s = scene.borrow_mut();
            let Some(p) = s.projection else { return };
            let (x, y) = (e.offset_x() as f64, e.offset_y() as f64);
            s.dragging = (0..2).find(|&i| {
                let (ex, ey) = p.to_px(s.ends[i][0], s.ends[i][1]);
                (ex - x).hypot(ey - y) <= GRAB_PX
            });
        })
    };
    let drag = {
        let scene = scene.clone();
        let recompute = recompute.clone();
        Callback::from(move |e: MouseEvent| {
            {
                let mut s = scene.borrow_mut();
                let (Some(i), Some(p)) = (s.dragging, s.projection) else {
                    return;
                };
                s.ends[i] = p.to_deg(e.offset_x() as f64, e.offset_y() as f64);
            }
            recompute();
        })
    };
    let release = {
        let scene = scene.clone();
        let ask_server = ask_server.clone();
        Callback::from(move |_: MouseEvent| {
            let was = scene.borrow_mut().dragging.take();
            if was.is_some() {
                ask_server.emit(());
            }
        })
    };

    let start_trip = {
        let scene = scene.clone();
        let trip = trip.clone();
        let error = error.clone();
        let trip_timer = trip_timer.clone();
        let canvas = canvas.clone();
        Callback::from(move |_: MouseEvent| {
            let [from, to] = scene.borrow().ends;
            let trip = trip.clone();
            let error = error.clone();
            let trip_timer = trip_timer.clone();
            let scene = scene.clone();
            let canvas = canvas.clone();
            spawn_local(async move {
                let started = match api::start_trip(from, to).await {
                    Ok(t) => t,
                    Err(err) => {
                        error.set(Some(err.message()));
                        return;
                    }
                };
                let id = started.trip_id.clone();
                let latest = Rc::new(RefCell::new(started.clone()));
                trip.set(Some(started));
                // The simulated vehicle: a few nodes along the route each second.
                let timer = Interval::new(TRIP_STEP_MS, move || {
                    let current = latest.borrow().clone();
                    if current.arrived || current.path.is_empty() {
                        return;
                    }
                    let next = current.path[(current.path.len() - 1).min(3)];
                    {
                        let mut s = scene.borrow_mut();
                        s.trip_at = Some(next);
                        draw(&canvas, &s);
                    }
                    let (id, latest, trip) = (id.clone(), latest.clone(), trip.clone());
                    spawn_local(async move {
                        if let Ok(view) = api::post_position(&id, next).await {
                            *latest.borrow_mut() = view.clone();
                            trip.set(Some(view));
                        }
                    });
                });
                *trip_timer.borrow_mut() = Some(timer);
            });
        })
    };

    let preview_text = match &*preview {
        Some(p) => format!("{} · {:.1} km", format_eta(p.eta_s), p.distance_m / 1000.0),
        None if *ready => "no route between A and B".to_owned(),
        None => "preparing the map…".to_owned(),
    };
    let (server_text, server_s) = match &*server_eta {
        Some(Ok(s)) => (format_eta(*s), format!("{s}")),
        Some(Err(e)) => (e.clone(), String::new()),
        None => ("…".to_owned(), String::new()),
    };
    // The ends' pixels, for tests that drag them.
    let ends_px = {
        let s = scene.borrow();
        s.projection
            .map(|p| {
                let (ax, ay) = p.to_px(s.ends[0][0], s.ends[0][1]);
                let (bx, by) = p.to_px(s.ends[1][0], s.ends[1][1]);
                format!("{ax:.1},{ay:.1},{bx:.1},{by:.1}")
            })
            .unwrap_or_default()
    };
    html! {
        <section class="eta-page">
            <h1>{ "ETA under live traffic" }</h1>
            if let Some(message) = &*error {
                <p class="notice error" role="alert">{ message.clone() }</p>
            }
            if let Some((name, synthetic, applied, ignored)) = &*source {
                <p class={classes!("eta-source", synthetic.then_some("notice"))} data-testid="eta-source" data-synthetic={synthetic.to_string()}>
                    { if *synthetic { format!("Map: {name}.") } else { format!("Map: {name} (OpenStreetMap contributors, ODbL); {applied} turn restrictions applied, {ignored} not (through a via way, or off the map).") } }
                </p>
            }
            <p class="eta-help">{ "Drag A or B: the route and its ETA are computed here as you drag, then the server answers with its own. Roads are coloured by live traffic (grey free flowing, yellow, orange, red slow, black closed)." }</p>
            <div class="eta-figures">
                <span>{ "Preview: " }<strong data-testid="eta-preview" data-eta-s={preview.as_ref().map(|p| p.eta_s.to_string()).unwrap_or_default()}>{ preview_text }</strong></span>
                <span>{ "Server: " }<strong data-testid="eta-server" data-eta-s={server_s}>{ server_text }</strong></span>
                <button type="button" data-testid="eta-trip-start" onclick={start_trip} disabled={!*ready}>{ "Drive a simulated trip A → B" }</button>
                if let Some(t) = &*trip {
                    <span data-testid="eta-trip" data-eta-s={t.eta_s.to_string()}>
                        { if t.arrived { "Trip: arrived".to_owned() } else { format!("Trip: {} left, {:.1} km, {} re-routes", format_eta(t.eta_s), t.distance_m / 1000.0, t.reroutes) } }
                    </span>
                }
            </div>
            <canvas ref={canvas} class="eta-map" data-testid="eta-map" data-ready={ready.to_string()} data-ends={ends_px}
                width={WIDTH.to_string()} height={HEIGHT.to_string()}
                onmousedown={grab} onmousemove={drag} onmouseup={release.clone()} onmouseleave={release} />
        </section>
    }
}
