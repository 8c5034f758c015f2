//! The sale page (`/sale`): the newest sale (or the one picked) with its countdown and
//! live figures, the purchase flow, this buyer's orders, and for admins (`sales:admin`)
//! the creation form and the dashboard.
//!
//! Live: the page follows the sale's realtime topic; each event (new figures, on any
//! instance) refetches the sale (and the dashboard). A queued purchase asks again with
//! its key every second, and whenever the figures change. A 2 s refresh covers a lost
//! socket.

use std::rc::Rc;

use gloo_timers::callback::Interval;
use meridian_shared::ids::format_rfc3339_ms;
use meridian_shared::sales::{
    CreateSale, Fulfilment, OrderList, SaleDashboard, SaleList, SaleState, SaleView,
};
use wasm_bindgen_futures::spawn_local;
use yew::prelude::*;

use super::api;
use super::state::{countdown, Purchase, PurchaseAction};
use crate::browser::{new_op_id, now_ms};
use crate::net::http::HttpError;
use crate::net::realtime::{Realtime, TopicView};
use crate::session::SessionState;

/// How often a queued purchase asks again, and the figures refresh without events.
pub const POLL_MS: u32 = 1_000;
/// How often the countdowns redraw.
pub const TICK_MS: u32 = 250;
/// The permission that shows the admin panel.
pub const ADMIN_PERMISSION: &str = "sales:admin";

fn refused(err: HttpError) -> (Option<String>, String) {
    (err.code().map(str::to_owned), err.message())
}

/// The sale page.
#[component]
pub fn SalePage() -> Html {
    let session = use_context::<SessionState>().unwrap_or_default();
    let realtime = use_context::<Realtime>();
    let is_admin = session.allows(ADMIN_PERMISSION);
    let sales = use_state(|| None::<Result<SaleList, String>>);
    let selected = use_state(|| None::<String>);
    let view = use_state(|| None::<SaleView>);
    // Server clock minus this tab's, from the last answer.
    let skew = use_state(|| 0i64);
    let now = use_state(now_ms);
    let purchase = use_reducer(Purchase::default);
    let orders = use_state(|| None::<OrderList>);
    let dashboard = use_state(|| None::<SaleDashboard>);
    let revision = use_state(|| 0u64);

    let load_sales = {
        let (sales, selected) = (sales.clone(), selected.clone());
        // With `newest`, the newest sale is shown (after creating one).
        Callback::from(move |newest: bool| {
            let (sales, selected) = (sales.clone(), selected.clone());
            spawn_local(async move {
                match api::list_sales().await {
                    Ok(list) => {
                        if newest || selected.is_none() {
                            if let Some(first) = list.sales.first() {
                                selected.set(Some(first.id.clone()));
                            }
                        }
                        sales.set(Some(Ok(list)));
                    }
                    Err(err) => sales.set(Some(Err(err.message()))),
                }
            });
        })
    };
    {
        let load_sales = load_sales.clone();
        use_effect_with((), move |_| load_sales.emit(false));
    }

    // The sale, its dashboard and the orders, fetched again on every revision.
    let refresh = {
        let (view, skew, dashboard, orders) = (
            view.clone(),
            skew.clone(),
            dashboard.clone(),
            orders.clone(),
        );
        Callback::from(move |(id, admin): (String, bool)| {
            let (view, skew, dashboard, orders) = (
                view.clone(),
                skew.clone(),
                dashboard.clone(),
                orders.clone(),
            );
            spawn_local(async move {
                if let Ok(sale) = api::sale(&id).await {
                    skew.set(sale.now_ms - now_ms());
                    view.set(Some(sale));
                }
                if admin {
                    if let Ok(figures) = api::dashboard(&id).await {
                        dashboard.set(Some(figures));
                    }
                }
                if let Ok(list) = api::orders().await {
                    orders.set(Some(list));
                }
            });
        })
    };
    {
        let refresh = refresh.clone();
        use_effect_with(
            ((*selected).clone(), *revision, is_admin),
            move |(id, _, admin)| {
                if let Some(id) = id {
                    refresh.emit((id.clone(), *admin));
                }
            },
        );
    }

    // The sale's realtime topic: each new event is a new revision.
    {
        let revision = revision.clone();
        let topic = view.as_ref().map(|v| v.topic.clone());
        use_effect_with(topic, move |topic| {
            let watch = match (realtime, topic) {
                (Some(realtime), Some(topic)) => {
                    let last = std::cell::Cell::new(0u64);
                    Some(realtime.watch(
                        topic,
                        false,
                        Callback::from(move |view: TopicView| {
                            let seq = view.events.last().map_or(0, |e| e.seq);
                            if seq != last.get() {
                                last.set(seq);
                                revision.set(seq);
                            }
                        }),
                    ))
                }
                _ => None,
            };
            move || drop(watch)
        });
    }

    // The clock tick, the safety refresh, and a queued purchase asking again.
    {
        let now = now.clone();
        let selected = selected.clone();
        let refresh = refresh.clone();
        use_effect_with((), move |_| {
            let ticker = Interval::new(TICK_MS, move || now.set(now_ms()));
            let poll = Interval::new(POLL_MS * 2, move || {
                if let Some(id) = (*selected).clone() {
                    refresh.emit((id, is_admin));
                }
            });
            move || drop((ticker, poll))
        });
    }
    let ask = {
        let purchase = purchase.clone();
        Callback::from(move |(id, key): (String, String)| {
            let purchase = purchase.clone();
            spawn_local(async move {
                let result = api::checkout(&id, &key).await.map_err(refused);
                purchase.dispatch(PurchaseAction::Answer { key, result });
            });
        })
    };
    {
        // While queued: ask again every second (and on each new revision).
        let ask = ask.clone();
        let queued = match (&*purchase, (*selected).clone()) {
            (Purchase::Queued { key, .. }, Some(id)) => Some((id, key.clone())),
            _ => None,
        };
        use_effect_with((queued, *revision), move |(queued, _)| {
            let poll = queued.clone().map(|(id, key)| {
                let ask = ask.clone();
                Interval::new(POLL_MS, move || ask.emit((id.clone(), key.clone())))
            });
            move || drop(poll)
        });
    }
    {
        // A reservation past its time is expired on this clock too.
        let purchase = purchase.clone();
        let server_now = *now + *skew;
        use_effect_with(server_now / 1000, move |_| {
            if let Purchase::Reserved { expires_at_ms, .. } = &*purchase {
                if *expires_at_ms <= server_now {
                    purchase.dispatch(PurchaseAction::TimedOut);
                }
            }
        });
    }

    let on_buy = {
        let (purchase, selected, ask) = (purchase.clone(), selected.clone(), ask.clone());
        Callback::from(move |_| {
            let Some(id) = (*selected).clone() else {
                return;
            };
            let key = new_op_id();
            purchase.dispatch(PurchaseAction::Buy { key: key.clone() });
            ask.emit((id, key));
        })
    };
    let on_pay = {
        let purchase = purchase.clone();
        let (revision, orders) = (revision.clone(), orders.clone());
        Callback::from(move |_| {
            let Purchase::Reserved {
                reservation_id,
                paying: false,
                ..
            } = &*purchase
            else {
                return;
            };
            let reservation_id = reservation_id.clone();
            purchase.dispatch(PurchaseAction::PayStarted);
            let (purchase, revision, orders) = (purchase.clone(), revision.clone(), orders.clone());
            spawn_local(async move {
                match api::pay(&reservation_id).await {
                    Ok(paid) => purchase.dispatch(PurchaseAction::Paid {
                        order_id: paid.order_id,
                    }),
                    Err(err) => purchase.dispatch(PurchaseAction::PayFailed {
                        code: err.code().map(str::to_owned),
                        message: err.message(),
                    }),
                }
                if let Ok(list) = api::orders().await {
                    orders.set(Some(list));
                }
                revision.set(*revision + 1);
            });
        })
    };
    let on_pick = {
        let selected = selected.clone();
        Callback::from(move |id: String| selected.set(Some(id)))
    };

    let server_now = *now + *skew;
    html! {
        <section class="page sale-page" data-testid="sale-page">
            <h1>{ "Flash sale" }</h1>
            { sale_list(sales.as_ref(), (*selected).clone(), on_pick) }
            {
                match view.as_ref() {
                    Some(sale) => html! {
                        <>
                            { sale_panel(sale, server_now) }
                            { purchase_panel(sale, &purchase, server_now, on_buy, on_pay) }
                        </>
                    },
                    None => html! { <p class="sale-empty" data-testid="sale-none">{ "No sale yet." }</p> },
                }
            }
            { orders_panel(orders.as_ref()) }
            if is_admin {
                <AdminPanel dashboard={(*dashboard).clone()} on_created={load_sales.reform(|_: ()| true)} />
            }
        </section>
    }
}

fn sale_list(
    sales: Option<&Result<SaleList, String>>,
    selected: Option<String>,
    on_pick: Callback<String>,
) -> Html {
    match sales {
        None => html! { <p>{ "Loading sales…" }</p> },
        Some(Err(message)) => html! { <p class="form-error">{ message.clone() }</p> },
        Some(Ok(list)) if list.sales.len() < 2 => html! {},
        Some(Ok(list)) => html! {
            <nav class="sale-list">
                { for list.sales.iter().map(|s| {
                    let id = s.id.clone();
                    let on_pick = on_pick.clone();
                    let active = selected.as_deref() == Some(s.id.as_str());
                    html! {
                        <button class={classes!("button", "button-ghost", active.then_some("active"))}
                            onclick={Callback::from(move |_| on_pick.emit(id.clone()))}>
                            { s.name.clone() }
                        </button>
                    }
                }) }
            </nav>
        },
    }
}

fn sale_panel(sale: &SaleView, server_now: i64) -> Html {
    let state = match sale.state {
        SaleState::Scheduled if server_now >= sale.starts_at_ms => "live",
        SaleState::Scheduled => "scheduled",
        SaleState::Live => "live",
        SaleState::SoldOut => "sold_out",
    };
    html! {
        <div class="sale-card" data-testid="sale-card" data-sale-id={sale.id.clone()}>
            <h2 data-testid="sale-name">{ sale.name.clone() }</h2>
            <p class="sale-product">{ format!("Product {}", sale.product_id) }</p>
            <p data-testid="sale-state" data-state={state}>
                {
                    match state {
                        "scheduled" => html! {
                            <>{ "Starts in " }<strong data-testid="sale-countdown">{ countdown(sale.starts_at_ms, server_now) }</strong>
                            { format!(" ({})", format_rfc3339_ms(sale.starts_at_ms)) }</>
                        },
                        "live" => html! { { "On sale now" } },
                        _ => html! { { "Sold out" } },
                    }
                }
            </p>
            <dl class="sale-figures">
                <dt>{ "Left" }</dt><dd data-testid="sale-stock-left">{ sale.stock_left }</dd>
                <dt>{ "Reserved" }</dt><dd data-testid="sale-reserved">{ sale.reserved }</dd>
                <dt>{ "Sold" }</dt><dd data-testid="sale-sold">{ sale.sold }</dd>
                <dt>{ "Of" }</dt><dd>{ sale.stock }</dd>
                <dt>{ "Queue here" }</dt><dd data-testid="sale-queue">{ sale.queue_length }</dd>
            </dl>
            <p class="sale-limit">{ format!("At most {} per buyer; a reservation holds {} s.", sale.per_user_limit, sale.reservation_ttl_s) }</p>
        </div>
    }
}

fn purchase_panel(
    sale: &SaleView,
    purchase: &Purchase,
    server_now: i64,
    on_buy: Callback<MouseEvent>,
    on_pay: Callback<MouseEvent>,
) -> Html {
    let open = server_now >= sale.starts_at_ms && sale.state != SaleState::SoldOut;
    let body = match purchase {
        Purchase::Idle => html! { <p>{ "Press buy to reserve one." }</p> },
        Purchase::Checking { .. } => html! { <p>{ "Checking…" }</p> },
        Purchase::Queued { position, .. } => html! {
            <p>{ "Every unit left is reserved by others. You are number " }
                <strong data-testid="queue-position">{ position }</strong>
                { " in line; a unit that comes back goes to the front." }</p>
        },
        Purchase::Reserved {
            expires_at_ms,
            paying,
            declined,
            ..
        } => html! {
            <>
                <p>{ "Reserved for you for " }
                    <strong data-testid="reservation-timer">{ countdown(*expires_at_ms, server_now) }</strong></p>
                if *declined {
                    <p class="form-error" data-testid="payment-declined">{ "The payment was declined. Your unit is still held: try again." }</p>
                }
                <button class="button button-primary" data-testid="pay-button" disabled={*paying} onclick={on_pay}>
                    { if *paying { "Paying…" } else { "Pay" } }
                </button>
            </>
        },
        Purchase::Confirmed { order_id } => html! {
            <p>{ "Confirmed. Order " }<strong data-testid="order-id">{ order_id.clone() }</strong></p>
        },
        Purchase::SoldOut => html! { <p>{ "Sold out: nothing left that could come back." }</p> },
        Purchase::LimitReached => {
            html! { <p>{ "You already hold or bought as many as one buyer may." }</p> }
        }
        Purchase::Expired => {
            html! { <p>{ "Your reservation expired; its unit went back to the sale." }</p> }
        }
        Purchase::Failed { message } => html! { <p class="form-error">{ message.clone() }</p> },
    };
    html! {
        <div class="sale-purchase" data-testid="purchase" data-state={purchase.as_str()}>
            { body }
            if purchase.may_buy() {
                <button class="button button-primary" data-testid="buy-button" disabled={!open} onclick={on_buy}>
                    { "Buy" }
                </button>
            }
        </div>
    }
}

fn orders_panel(orders: Option<&OrderList>) -> Html {
    let Some(list) = orders.filter(|l| !l.orders.is_empty()) else {
        return html! {};
    };
    html! {
        <div class="sale-orders">
            <h2>{ "Your orders" }</h2>
            <ul>
                { for list.orders.iter().map(|o| {
                    let fulfilment = match o.fulfilment {
                        Fulfilment::Pending => "pending",
                        Fulfilment::Fulfilled => "fulfilled",
                    };
                    html! {
                        <li data-testid="order-row" data-order-id={o.order_id.clone()} data-fulfilment={fulfilment}>
                            { format!("{} — {} — {}", o.order_id, o.product_id, fulfilment) }
                        </li>
                    }
                }) }
            </ul>
        </div>
    }
}

#[derive(Properties, PartialEq)]
struct AdminPanelProps {
    dashboard: Option<SaleDashboard>,
    on_created: Callback<()>,
}

/// One field of the creation form: its text, kept in state (so re-renders keep what
/// was typed), and its input handler.
#[hook]
fn use_field(initial: &'static str) -> (UseStateHandle<String>, Callback<InputEvent>) {
    let field = use_state(|| initial.to_owned());
    let oninput = {
        let field = field.clone();
        Callback::from(move |event: InputEvent| {
            let input: web_sys::HtmlInputElement = event.target_unchecked_into();
            field.set(input.value());
        })
    };
    (field, oninput)
}

#[component]
fn AdminPanel(props: &AdminPanelProps) -> Html {
    let (name, on_name) = use_field("Lanterns at dawn");
    let (stock, on_stock) = use_field("100");
    let (starts_in, on_starts_in) = use_field("10");
    let (limit, on_limit) = use_field("1");
    let (ttl, on_ttl) = use_field("120");
    let error = use_state(|| None::<String>);
    let on_submit = {
        let fields = Rc::new((
            name.clone(),
            stock.clone(),
            starts_in.clone(),
            limit.clone(),
            ttl.clone(),
        ));
        let (error, on_created) = (error.clone(), props.on_created.clone());
        Callback::from(move |event: SubmitEvent| {
            event.prevent_default();
            let (name, stock, starts_in, limit, ttl) = &*fields;
            let number = |text: &str| text.trim().parse::<i64>().unwrap_or(-1);
            let body = CreateSale {
                name: (**name).clone(),
                product_id: "flash-lantern".into(),
                stock: number(stock),
                starts_at: format_rfc3339_ms(now_ms() + number(starts_in).max(0) * 1000),
                per_user_limit: number(limit),
                reservation_ttl_s: number(ttl),
            };
            if let Err(err) = body.validate() {
                error.set(Some(err.to_string()));
                return;
            }
            let (error, on_created) = (error.clone(), on_created.clone());
            spawn_local(async move {
                match api::create_sale(&body).await {
                    Ok(_) => {
                        error.set(None);
                        on_created.emit(());
                    }
                    Err(err) => error.set(Some(err.message())),
                }
            });
        })
    };
    html! {
        <div class="sale-admin" data-testid="sale-admin">
            <h2>{ "Admin" }</h2>
            if let Some(d) = &props.dashboard {
                <dl class="sale-figures" data-testid="sale-dashboard">
                    <dt>{ "Stock left" }</dt><dd data-testid="dash-stock-left">{ d.figures.stock_left }</dd>
                    <dt>{ "Reservations" }</dt><dd data-testid="dash-reserved">{ d.figures.reserved }</dd>
                    <dt>{ "Orders" }</dt><dd data-testid="dash-orders">{ d.orders }</dd>
                    <dt>{ "Orders/s (10 s)" }</dt><dd data-testid="dash-orders-per-second">{ format!("{:.1}", d.orders_per_second) }</dd>
                    <dt>{ "Queue here" }</dt><dd data-testid="dash-queue">{ d.queue_length }</dd>
                    <dt>{ "Fulfilment backlog" }</dt><dd data-testid="dash-backlog">{ d.fulfilment_backlog }</dd>
                </dl>
            }
            <form class="sale-create" onsubmit={on_submit}>
                <label>{ "Name" }<input name="sale-name" value={(*name).clone()} oninput={on_name} /></label>
                <label>{ "Stock" }<input name="sale-stock" value={(*stock).clone()} oninput={on_stock} inputmode="numeric" /></label>
                <label>{ "Starts in (s)" }<input name="sale-starts-in" value={(*starts_in).clone()} oninput={on_starts_in} inputmode="numeric" /></label>
                <label>{ "Per buyer" }<input name="sale-limit" value={(*limit).clone()} oninput={on_limit} inputmode="numeric" /></label>
                <label>{ "Hold (s)" }<input name="sale-ttl" value={(*ttl).clone()} oninput={on_ttl} inputmode="numeric" /></label>
                <button type="submit" class="button button-primary" data-testid="create-sale">{ "Create sale" }</button>
                if let Some(message) = &*error {
                    <p class="form-error" data-testid="create-sale-error">{ message.clone() }</p>
                }
            </form>
        </div>
    }
}
