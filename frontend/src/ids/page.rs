//! The unique ID page: mint IDs (`POST /api/ids`), decode one and show its bits coloured
//! by field (`GET /api/ids/{id}`, checked against the same decoder run here in the
//! browser), and a live view of the node-id leases (`GET /api/ids/leases`, every 2 s).
//!
//! Invariants: a count is validated here with the server's own limits before it is
//! sent; the bit view always covers every bit of the ID exactly once; the lease panel
//! says whether it is loading, current, or stale after a failed refresh.

use gloo_timers::callback::Interval;
use meridian_shared::ids::{IdField, IdFormat, IdLeases, IdParts, IdsRequest};
use wasm_bindgen_futures::spawn_local;
use yew::prelude::*;

use super::api;
use crate::browser::{input_value, now_ms};
use crate::components::Spinner;

/// The most IDs one request may ask for (the server's limit).
pub const MAX_COUNT: u32 = 10_000;
/// How many minted IDs are listed; the rest are counted.
pub const SHOWN_IDS: usize = 100;
/// How often the lease panel refreshes.
pub const LEASES_REFRESH_MS: u32 = 2_000;

/// Reads the count field: a whole number from 1 to [`MAX_COUNT`].
pub fn parse_count(text: &str) -> Result<u32, String> {
    match text.trim().parse::<u32>() {
        Ok(n) if (1..=MAX_COUNT).contains(&n) => Ok(n),
        _ => Err(format!("Enter a whole number from 1 to {MAX_COUNT}.")),
    }
}

/// One run of equally coloured bits in the bit view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BitRun {
    pub field: String,
    pub bits: String,
}

/// Cuts an ID's bits into its fields, in order. Bits no field claims (which a valid
/// answer never has) are shown as `unknown` rather than dropped.
pub fn bit_runs(bits: &str, fields: &[IdField]) -> Vec<BitRun> {
    let mut runs = Vec::new();
    let mut at = 0usize;
    let mut fields: Vec<&IdField> = fields.iter().collect();
    fields.sort_by_key(|f| f.start);
    for field in fields {
        let start = field.start as usize;
        let end = (start + field.width as usize).min(bits.len());
        if start > at && start <= bits.len() {
            runs.push(BitRun {
                field: "unknown".into(),
                bits: bits[at..start].into(),
            });
        }
        if start >= at && start < end {
            runs.push(BitRun {
                field: field.name.clone(),
                bits: bits[start..end].into(),
            });
            at = end;
        }
    }
    if at < bits.len() {
        runs.push(BitRun {
            field: "unknown".into(),
            bits: bits[at..].into(),
        });
    }
    runs
}

/// How a lease's expiry reads, relative to the server's `now_ms`.
pub fn expires_in(expires_at_ms: i64, now_ms: i64) -> String {
    let left = expires_at_ms - now_ms;
    if left <= 0 {
        format!("expired {:.1} s ago", (-left) as f64 / 1000.0)
    } else {
        format!("in {:.1} s", left as f64 / 1000.0)
    }
}

#[derive(Debug, Clone, PartialEq, Default)]
struct Minted {
    ids: Vec<String>,
    format: Option<IdFormat>,
}

#[component]
pub fn IdsPage() -> Html {
    // A click on a minted ID asks the decode panel to decode it; the counter makes a
    // second click on the same ID a new request.
    let pick = use_state(|| (0u32, String::new()));
    let on_pick = {
        let pick = pick.clone();
        Callback::from(move |id: String| pick.set((pick.0 + 1, id)))
    };
    html! {
        <section class="page ids-page">
            <header class="page-header">
                <h1>{ "Unique IDs" }</h1>
                <p class="lead">
                    { "Roughly time-sortable 64-bit IDs (41 bits of milliseconds, 12-bit node, 10-bit sequence) and RFC 9562 UUIDv7, minted without coordination under a leased node id." }
                </p>
            </header>
            <div class="ids-grid">
                <MintPanel {on_pick} />
                <DecodePanel pick={(*pick).clone()} />
            </div>
            <LeasesPanel />
        </section>
    }
}

#[derive(Properties, PartialEq)]
struct MintPanelProps {
    on_pick: Callback<String>,
}

#[component]
fn MintPanel(props: &MintPanelProps) -> Html {
    let count_ref = use_node_ref();
    let format = use_state(|| IdFormat::Snowflake);
    let minted = use_state(Minted::default);
    let busy = use_state(|| false);
    let error = use_state(|| None::<String>);

    let onsubmit = {
        let (count_ref, format, minted, busy, error) = (
            count_ref.clone(),
            format.clone(),
            minted.clone(),
            busy.clone(),
            error.clone(),
        );
        Callback::from(move |event: SubmitEvent| {
            event.prevent_default();
            let count = match parse_count(&input_value(&count_ref)) {
                Ok(count) => count,
                Err(message) => {
                    error.set(Some(message));
                    return;
                }
            };
            let request = IdsRequest {
                count,
                format: *format,
            };
            let (minted, busy, error) = (minted.clone(), busy.clone(), error.clone());
            busy.set(true);
            error.set(None);
            spawn_local(async move {
                match api::mint_ids(&request).await {
                    Ok(answer) => minted.set(Minted {
                        ids: answer.ids,
                        format: Some(request.format),
                    }),
                    Err(err) => error.set(Some(err.message())),
                }
                busy.set(false);
            });
        })
    };
    let choose = |choice: IdFormat| {
        let format = format.clone();
        Callback::from(move |_: Event| format.set(choice))
    };
    let copy_all = {
        let minted = minted.clone();
        Callback::from(move |_: MouseEvent| {
            if let Some(window) = web_sys::window() {
                let _ = window
                    .navigator()
                    .clipboard()
                    .write_text(&minted.ids.join("\n"));
            }
        })
    };
    let shown = minted.ids.iter().take(SHOWN_IDS).map(|id| {
        let id = id.clone();
        let onclick = {
            let (id, on_pick) = (id.clone(), props.on_pick.clone());
            Callback::from(move |_: MouseEvent| on_pick.emit(id.clone()))
        };
        html! {
            <li>
                <button type="button" class="id-value" data-testid="id-value" title="Decode this ID" {onclick}>
                    { id }
                </button>
            </li>
        }
    });
    let more = minted.ids.len().saturating_sub(SHOWN_IDS);
    html! {
        <div class="card panel">
            <h2>{ "Generate" }</h2>
            <form class="form-inline" {onsubmit}>
                <label>
                    { "How many" }
                    <input ref={count_ref} name="count" type="number" min="1" max={MAX_COUNT.to_string()} value="5" data-testid="ids-count" />
                </label>
                <fieldset class="choice">
                    <label>
                        <input type="radio" name="format" checked={*format == IdFormat::Snowflake} onchange={choose(IdFormat::Snowflake)} data-testid="ids-format-snowflake" />
                        { "Snowflake (64-bit)" }
                    </label>
                    <label>
                        <input type="radio" name="format" checked={*format == IdFormat::Uuidv7} onchange={choose(IdFormat::Uuidv7)} data-testid="ids-format-uuidv7" />
                        { "UUIDv7" }
                    </label>
                </fieldset>
                <button type="submit" class="button button-primary" disabled={*busy} data-testid="ids-generate">
                    { if *busy { "Generating…" } else { "Generate" } }
                </button>
            </form>
            if let Some(message) = (*error).clone() {
                <p class="form-error" role="alert" data-testid="ids-generate-error">{ message }</p>
            }
            if !minted.ids.is_empty() {
                <div class="ids-result" data-testid="ids-result">
                    <div class="ids-result-head">
                        <span>{ format!("{} {} IDs, ascending — click one to decode it", minted.ids.len(), minted.format.map_or("", |f| f.as_str())) }</span>
                        <button type="button" class="button button-ghost" onclick={copy_all}>{ "Copy all" }</button>
                    </div>
                    <ul class="id-list">{ for shown }</ul>
                    if more > 0 {
                        <p class="muted">{ format!("and {more} more") }</p>
                    }
                </div>
            }
        </div>
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Decoded {
    Idle,
    Loading,
    Done(IdParts),
    Failed(String),
}

#[derive(Properties, PartialEq)]
struct DecodePanelProps {
    /// The latest ID picked from the minted list, with a request counter.
    pick: (u32, String),
}

#[component]
fn DecodePanel(props: &DecodePanelProps) -> Html {
    let input_ref = use_node_ref();
    let decoded = use_state(|| Decoded::Idle);
    let decode = {
        let decoded = decoded.clone();
        Callback::from(move |id: String| {
            let id = id.trim().to_owned();
            if id.is_empty() {
                decoded.set(Decoded::Failed("Enter an ID to decode.".into()));
                return;
            }
            decoded.set(Decoded::Loading);
            let decoded = decoded.clone();
            spawn_local(async move {
                let answer = api::describe_id(&id).await;
                decoded.set(match answer {
                    Ok(parts) => match IdParts::parse(&id) {
                        Ok(local) if local == parts => Decoded::Done(parts),
                        _ => Decoded::Failed(
                            "The server and this page decode the ID differently.".into(),
                        ),
                    },
                    Err(err) => Decoded::Failed(err.message()),
                });
            });
        })
    };
    let onsubmit = {
        let (input_ref, decode) = (input_ref.clone(), decode.clone());
        Callback::from(move |event: SubmitEvent| {
            event.prevent_default();
            decode.emit(input_value(&input_ref));
        })
    };
    {
        let (input_ref, decode) = (input_ref.clone(), decode.clone());
        use_effect_with(props.pick.clone(), move |(nonce, id)| {
            if *nonce > 0 {
                if let Some(input) = input_ref.cast::<web_sys::HtmlInputElement>() {
                    input.set_value(id);
                }
                decode.emit(id.clone());
            }
        });
    }
    let body = match &*decoded {
        Decoded::Idle => {
            html! { <p class="muted">{ "Paste a snowflake (decimal) or a UUIDv7." }</p> }
        }
        Decoded::Loading => html! { <Spinner label="Decoding…" /> },
        Decoded::Failed(message) => {
            html! { <p class="form-error" role="alert" data-testid="ids-error">{ message.clone() }</p> }
        }
        Decoded::Done(parts) => view_parts(parts),
    };
    html! {
        <div class="card panel">
                <h2>{ "Decode" }</h2>
                <form class="form-inline" {onsubmit}>
                    <input ref={input_ref} name="id" type="text" spellcheck="false" placeholder="ID" data-testid="ids-decode-input" />
                    <button type="submit" class="button button-primary" data-testid="ids-decode">{ "Decode" }</button>
                </form>
            { body }
        </div>
    }
}

fn view_parts(parts: &IdParts) -> Html {
    let mut rows = vec![
        ("kind", "Format", parts.kind.as_str().to_owned()),
        ("time", "Minted at", parts.time.clone()),
    ];
    let optional = [
        ("node", "Node", parts.node.map(|v| v.to_string())),
        (
            "sequence",
            "Sequence",
            parts.sequence.map(|v| v.to_string()),
        ),
        ("counter", "Counter", parts.counter.map(|v| v.to_string())),
        ("version", "Version", parts.version.map(|v| v.to_string())),
        (
            "variant",
            "Variant",
            parts.variant.map(|v| format!("{v:#b}")),
        ),
    ];
    rows.extend(
        optional
            .into_iter()
            .filter_map(|(key, label, value)| value.map(|v| (key, label, v))),
    );
    let runs = bit_runs(&parts.bits, &parts.fields);
    let legend = parts.fields.iter().map(|field| {
        html! {
            <li class={classes!("legend-item", format!("bits-{}", field.name))}>
                <span class="swatch" aria-hidden="true"></span>
                { format!("{} ({} bits) = {}", field.name, field.width, field.value) }
            </li>
        }
    });
    html! {
        <div class="id-parts">
            <dl class="facts" data-testid="ids-parts">
                { for rows.into_iter().map(|(key, label, value)| html! {
                    <>
                        <dt>{ label }</dt>
                        <dd data-field={key}>{ value }</dd>
                    </>
                }) }
            </dl>
            <div class="bits" data-testid="ids-bits" aria-label={format!("{} bits", parts.bits.len())}>
                { for runs.iter().map(|run| html! {
                    <span class={classes!("bit-run", format!("bits-{}", run.field))} title={run.field.clone()}>
                        { for run.bits.chars().map(|bit| html! { <span class="bit">{ bit }</span> }) }
                    </span>
                }) }
            </div>
            <ul class="legend">{ for legend }</ul>
        </div>
    }
}

#[derive(Debug, Clone, PartialEq, Default)]
struct LeasesView {
    leases: Option<IdLeases>,
    error: Option<String>,
    checked_at_ms: Option<i64>,
}

#[component]
fn LeasesPanel() -> Html {
    let view = use_state(LeasesView::default);
    {
        let view = view.clone();
        use_effect_with((), move |_| {
            let refresh = move || {
                let view = view.clone();
                spawn_local(async move {
                    let mut next = (*view).clone();
                    match api::id_leases().await {
                        Ok(leases) => {
                            next.leases = Some(leases);
                            next.error = None;
                        }
                        Err(err) => next.error = Some(err.message()),
                    }
                    next.checked_at_ms = Some(now_ms());
                    view.set(next);
                });
            };
            refresh();
            let interval = Interval::new(LEASES_REFRESH_MS, refresh);
            move || drop(interval)
        });
    }
    let body = match (&view.leases, &view.error) {
        (None, None) => html! { <Spinner label="Loading leases…" /> },
        (None, Some(error)) => html! { <p class="form-error" role="alert">{ error.clone() }</p> },
        (Some(leases), error) => html! {
            <>
                if let Some(error) = error {
                    <p class="form-error" role="alert">{ format!("Showing the last answer: {error}") }</p>
                }
                { view_leases(leases) }
            </>
        },
    };
    html! {
        <div class="card panel">
            <h2>{ "Node leases" }<span class="muted small">{ " live, every 2 s" }</span></h2>
            { body }
        </div>
    }
}

fn view_leases(leases: &IdLeases) -> Html {
    let m = &leases.metrics;
    let refusals = m.refused_no_lease
        + m.refused_lease_expired
        + m.refused_clock_backwards
        + m.refused_high_water;
    let this_node = leases
        .node_id
        .map_or("none".to_owned(), |node| node.to_string());
    html! {
        <>
            <dl class="facts">
                <dt>{ "This instance's node" }</dt>
                <dd data-testid="ids-my-node">{ this_node }</dd>
                <dt>{ "Issuing" }</dt>
                <dd>{ if leases.issuing { "yes" } else { "no: waiting for a lease" } }</dd>
                <dt>{ "Issued" }</dt>
                <dd>{ format!("{} snowflakes, {} UUIDv7", m.snowflakes_issued, m.uuids_issued) }</dd>
                <dt>{ "Refused" }</dt>
                <dd>{ format!("{refusals} (no lease {}, lease expired {}, clock behind {}, high water {})", m.refused_no_lease, m.refused_lease_expired, m.refused_clock_backwards, m.refused_high_water) }</dd>
                <dt>{ "Leases" }</dt>
                <dd>{ format!("{} acquired, {} renewals, {} failed renewals, {} lost", m.lease_acquisitions, m.lease_renewals, m.lease_renewal_failures, m.lease_losses) }</dd>
            </dl>
            <table class="table" data-testid="ids-leases">
                <thead>
                    <tr><th>{ "Node" }</th><th>{ "Holder" }</th><th>{ "Fencing token" }</th><th>{ "Expires" }</th><th>{ "High water" }</th></tr>
                </thead>
                <tbody>
                    { for leases.leases.iter().map(|lease| html! {
                        <tr data-testid="lease-row" class={classes!(lease.mine.then_some("mine"), (!lease.live).then_some("expired"))}>
                            <td>{ lease.node_id }{ if lease.mine { " (this instance)" } else { "" } }</td>
                            <td class="mono">{ lease.holder.clone() }</td>
                            <td>{ lease.fencing_token }</td>
                            <td>{ expires_in(lease.expires_at_ms, leases.now_ms) }</td>
                            <td class="mono">{ meridian_shared::ids::format_rfc3339_ms(lease.high_water_ms) }</td>
                        </tr>
                    }) }
                </tbody>
            </table>
        </>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_checked_like_the_server_does() {
        assert_eq!(parse_count("5"), Ok(5));
        assert_eq!(parse_count(" 10000 "), Ok(10_000));
        assert!(parse_count("0").is_err());
        assert!(parse_count("10001").is_err());
        assert!(parse_count("-1").is_err());
        assert!(parse_count("many").is_err());
    }

    #[test]
    fn bit_runs_cover_every_bit_of_a_snowflake() {
        let parts = IdParts::of_snowflake(0x1234_5678_9abc_def0 & (u64::MAX >> 1)).unwrap();
        let runs = bit_runs(&parts.bits, &parts.fields);
        let joined: String = runs.iter().map(|r| r.bits.as_str()).collect();
        assert_eq!(joined, parts.bits);
        assert_eq!(joined.len(), 64);
        let names: Vec<&str> = runs.iter().map(|r| r.field.as_str()).collect();
        assert_eq!(names, ["sign", "time", "node", "sequence"]);
    }

    #[test]
    fn bit_runs_cover_every_bit_of_a_uuid() {
        let uuid = meridian_shared::ids::encode_uuid_v7(1_700_000_000_000, 5, 42).unwrap();
        let parts = IdParts::of_uuid_v7(uuid).unwrap();
        let runs = bit_runs(&parts.bits, &parts.fields);
        let joined: String = runs.iter().map(|r| r.bits.as_str()).collect();
        assert_eq!(joined, parts.bits);
        assert_eq!(joined.len(), 128);
        assert!(runs.iter().all(|r| r.field != "unknown"));
    }

    #[test]
    fn unclaimed_bits_are_shown_not_dropped() {
        let field = IdField {
            name: "time".into(),
            start: 2,
            width: 2,
            value: "1".into(),
        };
        let runs = bit_runs("010110", &[field]);
        let joined: String = runs.iter().map(|r| r.bits.as_str()).collect();
        assert_eq!(joined, "010110");
        assert_eq!(runs[0].field, "unknown");
        assert_eq!(runs[1].field, "time");
    }

    #[test]
    fn expiry_reads_both_ways() {
        assert_eq!(expires_in(3_500, 1_000), "in 2.5 s");
        assert_eq!(expires_in(1_000, 3_000), "expired 2.0 s ago");
    }
}
