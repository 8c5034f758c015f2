//! The shop: the catalog (`GET /api/products`, filtered by category and search), the
//! session's cart (local-first, through [`CartClient`]: a change shows at once, is kept
//! in IndexedDB, and is sent when the server can be reached), the notice of a guest cart
//! merged at sign-in, and the cart's history ([`super::history`]).
//!
//! Test contract (`data-testid`s; other people's tests rely on them exactly):
//! `catalog`, `product-{id}`, `add-{id}`; `cart` (`data-version`), `line-{id}` holding
//! `qty-{id}` (the number only), `inc-{id}`, `dec-{id}`, `remove-{id}`; `cart-total`
//! (`data-cents`), `cart-count` (units), `cart-clear`, `cart-owner` (`data-owner` =
//! `guest` | `user`), `cart-sync` (`data-state` = `synced` | `pending` | `offline` |
//! `error`), `merge-notice`, `cart-history` with `history-entry` children.
//!
//! Invariants: money is integer cents until [`format_cents`] shows it; the total, the
//! count and the lines always come from one [`CartSnapshot`]; a dismissed merge notice
//! stays dismissed for that merge (localStorage), and a later merge shows again.

use std::collections::BTreeMap;
use std::rc::Rc;

use js_sys::{Function, Reflect};
use meridian_shared::cart::{
    CartOpType, CartOwner, MergeSummary, Product, MAX_LINES, MAX_QUANTITY,
};
use wasm_bindgen::{JsCast, JsValue};
use yew::prelude::*;

use super::client::{CartClient, CartSnapshot};
use super::history::HistoryPanel;
use super::model::{format_cents, CartIntent, Refusal, ShownLine, SyncState};
use crate::components::Spinner;
use crate::net::realtime::{ConnectionState, Realtime, RealtimeStatus};
use crate::session::SessionState;

/// At or below this many units in stock, a product says "Only N left".
pub const LOW_STOCK: i64 = 10;

// ---------------------------------------------------------------------------------------
// Pure helpers

/// The catalog's categories, in the order they first appear.
pub fn categories(products: &[Product]) -> Vec<String> {
    let mut seen: Vec<String> = Vec::new();
    for product in products {
        if !seen.contains(&product.category) {
            seen.push(product.category.clone());
        }
    }
    seen
}

/// The products of `category` (all with `None`) whose name, description or category
/// contains every word of `query` (case-insensitive), in catalog order.
pub fn filter_products<'a>(
    products: &'a [Product],
    category: Option<&str>,
    query: &str,
) -> Vec<&'a Product> {
    let words: Vec<String> = query.split_whitespace().map(str::to_lowercase).collect();
    products
        .iter()
        .filter(|product| category.is_none_or(|category| product.category == category))
        .filter(|product| {
            let text = format!(
                "{} {} {}",
                product.name, product.description, product.category
            )
            .to_lowercase();
            words.iter().all(|word| text.contains(word.as_str()))
        })
        .collect()
}

/// What a product's stock says, and its style: `("In stock", "stock-ok")`,
/// `("Only 3 left", "stock-low")`, `("Out of stock", "stock-out")`.
pub fn stock_label(stock: i64) -> (String, &'static str) {
    match stock {
        s if s <= 0 => ("Out of stock".to_owned(), "stock-out"),
        s if s <= LOW_STOCK => (format!("Only {s} left"), "stock-low"),
        _ => ("In stock".to_owned(), "stock-ok"),
    }
}

pub(super) fn plural(n: u32, one: &str, many: &str) -> String {
    if n == 1 {
        format!("{n} {one}")
    } else {
        format!("{n} {many}")
    }
}

/// The merge notice's sentence: "3 items from your guest cart were added".
pub fn merge_notice_text(summary: &MergeSummary) -> String {
    let mut text = match summary.added_items {
        0 => format!(
            "The {} in your guest cart were already in your cart.",
            plural(summary.guest_items, "item", "items")
        ),
        1 => "1 item from your guest cart was added.".to_owned(),
        n => format!("{n} items from your guest cart were added."),
    };
    if summary.lines_not_merged > 0 {
        text.push_str(&format!(
            " {} did not fit: a cart holds at most {MAX_LINES} products.",
            plural(summary.lines_not_merged, "product", "products")
        ));
    }
    text
}

/// The localStorage key that remembers the dismissal of one merge.
pub fn merge_dismissal_key(summary: &MergeSummary) -> String {
    format!("meridian.cart.merge-dismissed.{}", summary.guest_cart_id)
}

// ---------------------------------------------------------------------------------------
// localStorage, through `Reflect` (it may be missing or throw, as in some private modes)

fn local_storage() -> Option<JsValue> {
    let window = web_sys::window()?;
    Reflect::get(&window, &JsValue::from_str("localStorage"))
        .ok()
        .filter(JsValue::is_object)
}

fn storage_call(method: &str, args: &[&str]) -> Option<JsValue> {
    let storage = local_storage()?;
    let function: Function = Reflect::get(&storage, &JsValue::from_str(method))
        .ok()?
        .dyn_into()
        .ok()?;
    match args {
        [key] => function.call1(&storage, &JsValue::from_str(key)).ok(),
        [key, value] => function
            .call2(&storage, &JsValue::from_str(key), &JsValue::from_str(value))
            .ok(),
        _ => None,
    }
}

fn merge_dismissed(key: &str) -> bool {
    storage_call("getItem", &[key]).is_some_and(|value| value.as_string().is_some())
}

fn dismiss_merge(key: &str) {
    let _ = storage_call("setItem", &[key, "1"]);
}

// ---------------------------------------------------------------------------------------
// Components

#[derive(Properties, PartialEq)]
struct CatalogProps {
    products: Option<Rc<Vec<Product>>>,
    error: Option<String>,
    /// Product id → quantity in the cart.
    in_cart: Rc<BTreeMap<String, u32>>,
    on_intent: Callback<CartIntent>,
    on_retry: Callback<()>,
}

#[component]
fn Catalog(props: &CatalogProps) -> Html {
    let query = use_state(String::new);
    let category = use_state(|| None::<String>);

    let Some(products) = props.products.clone() else {
        return html! {
            <section class="catalog" data-testid="catalog" aria-busy="true">
                if let Some(error) = &props.error {
                    <div class="callout callout-error" role="alert">
                        <strong>{ "The catalog could not be loaded. " }</strong>
                        { error.clone() }
                        { " " }
                        <button type="button" class="link-button" onclick={props.on_retry.reform(|_: MouseEvent| ())}>
                            { "Try again" }
                        </button>
                    </div>
                } else {
                    <Spinner label="Loading the catalog…" />
                }
            </section>
        };
    };

    let oninput = {
        let query = query.clone();
        Callback::from(move |event: InputEvent| {
            let input: web_sys::HtmlInputElement = event.target_unchecked_into();
            query.set(input.value());
        })
    };
    let shown = filter_products(&products, category.as_deref(), &query);
    let cart_full = props.in_cart.len() >= MAX_LINES;
    let chip = |value: Option<String>, label: String| {
        let pressed = *category == value;
        let category = category.clone();
        html! {
            <button
                type="button"
                class={classes!("chip", pressed.then_some("chip-active"))}
                aria-pressed={pressed.to_string()}
                onclick={Callback::from(move |_: MouseEvent| category.set(value.clone()))}
            >
                { label }
            </button>
        }
    };

    html! {
        <section class="catalog" data-testid="catalog" aria-labelledby="catalog-title">
            <div class="catalog-tools">
                <h2 id="catalog-title" class="visually-hidden">{ "Catalog" }</h2>
                <input
                    type="search"
                    class="catalog-search"
                    placeholder="Search products"
                    aria-label="Search products"
                    value={(*query).clone()}
                    {oninput}
                />
                <div class="chips" role="group" aria-label="Category">
                    { chip(None, "All".to_owned()) }
                    { for categories(&products).into_iter().map(|name| chip(Some(name.clone()), name)) }
                </div>
            </div>
            if shown.is_empty() {
                <p class="empty muted">{ "No product matches your search." }</p>
            } else {
                <ul class="product-grid">
                    { for shown.into_iter().map(|product| {
                        let in_cart = props.in_cart.get(&product.id).copied().unwrap_or(0);
                        let (stock, stock_class) = stock_label(product.stock);
                        let blocked = if product.stock <= 0 {
                            Some("Out of stock")
                        } else if in_cart >= MAX_QUANTITY {
                            Some("You have the most one order allows")
                        } else if in_cart == 0 && cart_full {
                            Some("Your cart is full")
                        } else {
                            None
                        };
                        let id = product.id.clone();
                        let on_add = props.on_intent.reform(move |_: MouseEvent| CartIntent::Add(id.clone()));
                        html! {
                            <li class="card product-card" key={product.id.clone()} data-testid={format!("product-{}", product.id)}>
                                <div class="product-top">
                                    <span class="product-category">{ product.category.clone() }</span>
                                    <span class={classes!("stock", stock_class)} title={format!("{} in stock", product.stock)}>{ stock }</span>
                                </div>
                                <h3 class="product-name">{ product.name.clone() }</h3>
                                <p class="product-description">{ product.description.clone() }</p>
                                <div class="product-bottom">
                                    <span class="price">{ format_cents(product.unit_price_cents) }</span>
                                    <button
                                        type="button"
                                        class="button button-primary"
                                        data-testid={format!("add-{}", product.id)}
                                        disabled={blocked.is_some()}
                                        title={blocked}
                                        onclick={on_add}
                                    >
                                        { "Add to cart" }
                                    </button>
                                </div>
                                if in_cart > 0 {
                                    <p class="in-cart small">{ format!("{in_cart} in your cart") }</p>
                                }
                            </li>
                        }
                    }) }
                </ul>
            }
        </section>
    }
}

#[derive(Properties, PartialEq)]
struct CartLineProps {
    line: ShownLine,
    on_intent: Callback<CartIntent>,
}

#[component]
fn CartLineRow(props: &CartLineProps) -> Html {
    let line = &props.line;
    let id = line.product_id.clone();
    let intent = |make: fn(String) -> CartIntent| {
        let id = id.clone();
        props
            .on_intent
            .reform(move |_: MouseEvent| make(id.clone()))
    };
    html! {
        <li
            class={classes!("cart-line", line.syncing.then_some("syncing"))}
            data-testid={format!("line-{id}")}
            data-syncing={line.syncing.to_string()}
        >
            <div class="cart-line-name">
                <span>{ line.name.clone() }</span>
                <span class="muted small">
                    { match line.unit_price_cents {
                        Some(price) => format!("{} each", format_cents(price)),
                        None => "Price unavailable".to_owned(),
                    } }
                </span>
            </div>
            <div class="stepper" role="group" aria-label={format!("Quantity of {}", line.name)}>
                <button
                    type="button"
                    class="stepper-button"
                    data-testid={format!("dec-{id}")}
                    aria-label={format!("One less {}", line.name)}
                    onclick={intent(CartIntent::Decrement)}
                >
                    { "−" }
                </button>
                <span class="qty" data-testid={format!("qty-{id}")}>{ line.quantity }</span>
                <button
                    type="button"
                    class="stepper-button"
                    data-testid={format!("inc-{id}")}
                    aria-label={format!("One more {}", line.name)}
                    disabled={line.quantity >= MAX_QUANTITY}
                    onclick={intent(CartIntent::Add)}
                >
                    { "+" }
                </button>
            </div>
            <span class="cart-line-total">
                { line.line_total_cents.map(format_cents).unwrap_or_else(|| "—".to_owned()) }
            </span>
            <button
                type="button"
                class="link-button cart-line-remove"
                data-testid={format!("remove-{id}")}
                aria-label={format!("Remove {} from the cart", line.name)}
                onclick={intent(CartIntent::Remove)}
            >
                { "Remove" }
            </button>
        </li>
    }
}

#[derive(Properties, PartialEq)]
struct CartPanelProps {
    snapshot: CartSnapshot,
    owner: CartOwner,
    on_intent: Callback<CartIntent>,
    on_dismiss_refusal: Callback<String>,
}

#[component]
fn CartPanel(props: &CartPanelProps) -> Html {
    let snapshot = &props.snapshot;
    let display = &snapshot.display;
    let version = snapshot.confirmed.as_ref().map_or(0, |view| view.version);
    let (owner, owner_label) = match props.owner {
        CartOwner::Guest => ("guest", "Guest cart"),
        CartOwner::User => ("user", "Your cart"),
    };
    let sync = snapshot.sync;
    let sync_title = match sync {
        SyncState::Synced => "Every change is saved on the server.".to_owned(),
        SyncState::Pending if snapshot.pending == 0 => {
            "Loading your cart from the server.".to_owned()
        }
        SyncState::Pending => "Your changes are on their way to the server.".to_owned(),
        SyncState::Offline => {
            "No connection: changes are kept on this device and sent when you are back online."
                .to_owned()
        }
        SyncState::Error => snapshot
            .failing
            .clone()
            .or_else(|| snapshot.load_error.clone())
            .unwrap_or_else(|| "The server could not be reached.".to_owned()),
    };
    let loading = !snapshot.restored && snapshot.confirmed.is_none() && snapshot.pending == 0;
    let on_clear = props.on_intent.reform(|_: MouseEvent| CartIntent::Clear);

    html! {
        <section class="card panel cart-panel" data-testid="cart" data-version={version.to_string()} aria-labelledby="cart-title">
            <header class="panel-header">
                <h2 id="cart-title" data-testid="cart-owner" data-owner={owner}>{ owner_label }</h2>
                <span
                    class={classes!("sync", format!("sync-{}", sync.as_str()))}
                    data-testid="cart-sync"
                    data-state={sync.as_str()}
                    title={sync_title}
                    role="status"
                >
                    <span class="pill-dot" aria-hidden="true"></span>
                    { sync.label(snapshot.pending) }
                </span>
            </header>
            if loading {
                <Spinner label="Loading your cart…" />
            } else if display.lines.is_empty() {
                <p class="empty muted">{ "Your cart is empty. Add something from the catalog." }</p>
            } else {
                <ul class="cart-lines">
                    { for display.lines.iter().map(|line| html! {
                        <CartLineRow key={line.product_id.clone()} line={line.clone()} on_intent={props.on_intent.clone()} />
                    }) }
                </ul>
            }
            <dl class="cart-summary">
                <div>
                    <dt>{ "Items" }</dt>
                    <dd data-testid="cart-count">{ display.item_count }</dd>
                </div>
                <div class="cart-summary-total">
                    <dt>{ "Total" }</dt>
                    <dd data-testid="cart-total" data-cents={display.total_cents.to_string()}>
                        { format_cents(display.total_cents) }
                    </dd>
                </div>
            </dl>
            if !display.fully_priced {
                <p class="muted small">{ "Some prices are not known yet; the total leaves them out." }</p>
            }
            <div class="cart-actions">
                <button
                    type="button"
                    class="button button-ghost"
                    data-testid="cart-clear"
                    disabled={display.lines.is_empty()}
                    onclick={on_clear}
                >
                    { "Clear cart" }
                </button>
            </div>
            if let Some(hint) = &snapshot.hint {
                <p class="form-hint" role="status">{ hint.clone() }</p>
            }
            if let Some(error) = &snapshot.load_error {
                <p class="callout callout-error small" role="alert">
                    { format!("Could not load your cart from the server: {error}") }
                </p>
            }
            { for snapshot.refusals.iter().map(|refusal| refusal_callout(refusal, &props.on_dismiss_refusal)) }
        </section>
    }
}

fn refusal_callout(refusal: &Refusal, on_dismiss: &Callback<String>) -> Html {
    let op_id = refusal.op.op_id.clone();
    let what = match (refusal.op.op_type, refusal.op.product_id.as_deref()) {
        (CartOpType::Clear, _) => "Clearing the cart".to_owned(),
        (_, Some(product)) => format!("A change to {product}"),
        (_, None) => "A change".to_owned(),
    };
    html! {
        <div class="callout callout-error small" role="alert" data-testid="cart-refused" key={op_id.clone()}>
            { format!("{what} was refused: {}", refusal.message) }
            { " " }
            <button type="button" class="link-button" onclick={on_dismiss.reform(move |_: MouseEvent| op_id.clone())}>
                { "Dismiss" }
            </button>
        </div>
    }
}

#[derive(Properties, PartialEq)]
struct MergeNoticeProps {
    summary: MergeSummary,
}

#[component]
fn MergeNotice(props: &MergeNoticeProps) -> Html {
    let key = merge_dismissal_key(&props.summary);
    let dismissed = use_state_eq(|| merge_dismissed(&key));
    {
        let dismissed = dismissed.setter();
        use_effect_with(key.clone(), move |key| dismissed.set(merge_dismissed(key)));
    }
    if *dismissed {
        return html! {};
    }
    let on_dismiss = {
        let dismissed = dismissed.clone();
        Callback::from(move |_: MouseEvent| {
            dismiss_merge(&key);
            dismissed.set(true);
        })
    };
    html! {
        <div class="notice merge-notice" role="status" data-testid="merge-notice">
            <span>{ merge_notice_text(&props.summary) }</span>
            <button type="button" class="link-button" data-testid="merge-dismiss" onclick={on_dismiss}>
                { "Dismiss" }
            </button>
        </div>
    }
}

/// The shop page.
#[component]
pub fn CartPage() -> Html {
    let realtime = use_context::<Realtime>();
    let session = use_context::<SessionState>().unwrap_or_default();
    let status = use_context::<RealtimeStatus>().unwrap_or_default();
    let snapshot = use_state(CartSnapshot::default);

    let client = {
        let set_snapshot = snapshot.setter();
        use_memo((), move |_| {
            CartClient::new(
                realtime,
                Callback::from(move |next: CartSnapshot| set_snapshot.set(next)),
            )
        })
    };
    {
        let client = client.clone();
        use_effect_with((), move |_| {
            client.start();
            move || client.stop()
        });
    }
    {
        let client = client.clone();
        let session_id = match &session {
            SessionState::Known(me) => Some(me.session_id.clone()),
            _ => None,
        };
        use_effect_with(session_id, move |session_id| {
            client.session_seen(session_id.clone())
        });
    }
    {
        // Only a transition to online counts: at mount, `start` fetches anyway.
        let client = client.clone();
        let previous = use_mut_ref(|| None::<ConnectionState>);
        use_effect_with(status.state, move |state| {
            let before = previous.replace(Some(*state));
            if *state == ConnectionState::Online
                && before.is_some_and(|before| before != ConnectionState::Online)
            {
                client.connection_online();
            }
        });
    }

    let on_intent = {
        let client = client.clone();
        Callback::from(move |intent: CartIntent| client.act(intent))
    };
    let on_dismiss_refusal = {
        let client = client.clone();
        Callback::from(move |op_id: String| client.dismiss_refusal(&op_id))
    };
    let on_retry_catalog = {
        let client = client.clone();
        Callback::from(move |_: ()| client.reload_catalog())
    };

    let in_cart: Rc<BTreeMap<String, u32>> = Rc::new(
        snapshot
            .display
            .lines
            .iter()
            .map(|line| (line.product_id.clone(), line.quantity))
            .collect(),
    );
    let owner = snapshot.owner(session.is_user());
    let merge = snapshot
        .confirmed
        .as_ref()
        .filter(|view| view.owner == CartOwner::User)
        .and_then(|view| view.merge.clone());

    html! {
        <section class="page shop">
            <div class="page-header">
                <h1>{ "Shop" }</h1>
                <p class="lead">
                    { "Your cart lives in this browser first: changes show at once, work offline, and reach your other tabs and devices as soon as the server has them." }
                </p>
            </div>
            if let Some(summary) = merge {
                <MergeNotice {summary} />
            }
            if let Some(note) = &snapshot.storage_note {
                <p class="callout callout-warning" data-testid="cart-storage-note">{ note.clone() }</p>
            }
            <div class="shop-layout">
                <Catalog
                    products={snapshot.catalog.clone()}
                    error={snapshot.catalog_error.clone()}
                    in_cart={in_cart}
                    on_intent={on_intent.clone()}
                    on_retry={on_retry_catalog}
                />
                <aside class="shop-side">
                    <CartPanel
                        snapshot={(*snapshot).clone()}
                        {owner}
                        {on_intent}
                        {on_dismiss_refusal}
                    />
                    <HistoryPanel
                        cart_id={snapshot.confirmed.as_ref().map(|view| view.cart_id.clone())}
                        version={snapshot.confirmed.as_ref().map_or(0, |view| view.version)}
                        products={snapshot.catalog.clone()}
                    />
                </aside>
            </div>
        </section>
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cart::fixtures::{product, summary};

    #[test]
    fn products_filter_by_category_and_words() {
        let products = vec![
            product("a", "Coffee", "Huila beans"),
            product("b", "Tea", "Sencha"),
            product("c", "Coffee", "Espresso blend"),
        ];
        assert_eq!(categories(&products), vec!["Coffee", "Tea"]);
        let ids = |shown: Vec<&Product>| shown.iter().map(|p| p.id.clone()).collect::<Vec<_>>();
        assert_eq!(
            ids(filter_products(&products, None, "")),
            vec!["a", "b", "c"]
        );
        assert_eq!(
            ids(filter_products(&products, Some("Coffee"), "")),
            vec!["a", "c"]
        );
        assert_eq!(
            ids(filter_products(&products, None, "  BLEND espresso ")),
            vec!["c"]
        );
        assert_eq!(ids(filter_products(&products, None, "tea")), vec!["b"]);
        assert!(filter_products(&products, Some("Tea"), "beans").is_empty());
    }

    #[test]
    fn stock_reads_plainly() {
        assert_eq!(stock_label(0).0, "Out of stock");
        assert_eq!(stock_label(3), ("Only 3 left".into(), "stock-low"));
        assert_eq!(stock_label(120).1, "stock-ok");
    }

    #[test]
    fn the_merge_notice_counts_what_was_added() {
        assert_eq!(
            merge_notice_text(&summary(3, 0)),
            "3 items from your guest cart were added."
        );
        assert_eq!(
            merge_notice_text(&summary(1, 0)),
            "1 item from your guest cart was added."
        );
        assert_eq!(
            merge_notice_text(&summary(0, 0)),
            "The 3 items in your guest cart were already in your cart."
        );
        assert!(merge_notice_text(&summary(2, 1)).contains("1 product did not fit"));
        assert_eq!(
            merge_dismissal_key(&summary(3, 0)),
            "meridian.cart.merge-dismissed.guest-s1"
        );
    }
}
