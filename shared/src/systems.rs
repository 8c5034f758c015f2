//! The catalogue of Meridian's systems that exist in this build, shown on the home page.
//!
//! A system is listed here only once it works end to end: its API, its page and its
//! tests. The list grows as systems land.

/// One system of Meridian, as the home page lists it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SystemInfo {
    /// The path of its page in the web UI.
    pub path: &'static str,
    pub name: &'static str,
    pub summary: &'static str,
}

/// Every system that exists in this build, in the order the home page shows them.
pub const SYSTEMS: &[SystemInfo] = &[
    SystemInfo {
        path: "/ids",
        name: "Unique IDs",
        summary: "Time-sortable 64-bit IDs and UUIDv7 from leased node ids: no coordination on the hot path, no duplicates under clock jumps, restarts or pauses.",
    },
    SystemInfo {
        path: "/cart",
        name: "Shopping cart",
        summary: "A local-first cart: changes show at once and work offline, tabs and devices converge (adds are never lost), and a guest cart merges into your account when you sign in.",
    },
    SystemInfo {
        path: "/flags",
        name: "Feature flags",
        summary: "Flags with targeting rules and percentage rollouts, one evaluator in the browser, SDKs and the server, a kill switch that reaches every connected client, approvals and an audit log; OpenFeature's OFREP for other clients.",
    },
    SystemInfo {
        path: "/docs",
        name: "Collaborative documents",
        summary: "Rich text on the Yjs CRDT: type together and see each other's cursors, keep editing offline, share as editor or viewer, restore any version; the stock y-websocket client works against it.",
    },
    SystemInfo {
        path: "/feed",
        name: "News feed",
        summary: "A ranked feed that says why each post is there: hybrid fanout (pushed to followers' inboxes from a durable queue, pulled for million-follower accounts), stable cursors, live \"new posts\", a seeded power-law graph.",
    },
    SystemInfo {
        path: "/sale",
        name: "Flash sale",
        summary: "Thousands of buyers for a few units: batched reservations that never oversell (across instances and kill -9), an honest queue, sold out said at once, payment, and every order fulfilled exactly once.",
    },
    SystemInfo {
        path: "/drive",
        name: "File sync",
        summary: "Your files on every device: content-defined chunks so only what changed travels, conflicted copies instead of lost edits, shared folders, and `meridian sync` for a local folder.",
    },
    SystemInfo {
        path: "/tracing",
        name: "Distributed tracing",
        summary: "OTLP and Zipkin ingest acknowledged only once durable, a span store of its own (bloom-filtered blocks, trace by id in milliseconds), Tempo's API for Grafana, and a waterfall that opens 100,000-span traces.",
    },
    SystemInfo {
        path: "/eta",
        name: "ETA under live traffic",
        summary: "Routes in milliseconds on real Helsinki roads (OpenStreetMap) that change as traffic does: GPS probes map-matched onto roads, live weights in customizable contraction hierarchies, incidents, trips re-routed with their ETA pushed live, and an instant route preview computed in your browser.",
    },
    SystemInfo {
        path: "/wal",
        name: "Write-ahead log",
        summary: "A replicated log that answers a write only once a majority holds it durably: CRC-chained segments that tell a torn write from corruption, Raft (openraft) for election and failover, a local three-node cluster you can kill -9 from the page, and the key-value state at any past LSN.",
    },
];
