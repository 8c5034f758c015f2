//! The demo catalog: seeded into the `products` table on first start, then read into
//! memory (products change rarely; carts read names and prices on every answer).

use std::collections::HashMap;

use meridian_shared::cart::Product;
use sqlx::{AnyPool, Row};

/// (id, name, category, price in cents, stock, description).
type Seed = (
    &'static str,
    &'static str,
    &'static str,
    i64,
    i64,
    &'static str,
);

const SEED: &[Seed] = &[
    (
        "coffee-yirgacheffe",
        "Yirgacheffe beans, 250 g",
        "Coffee",
        1450,
        120,
        "Washed Ethiopian coffee with notes of bergamot and jasmine.",
    ),
    (
        "coffee-huila",
        "Huila beans, 250 g",
        "Coffee",
        1290,
        95,
        "Colombian coffee, red apple and caramel, medium roast.",
    ),
    (
        "coffee-sumatra",
        "Sumatra Mandheling, 250 g",
        "Coffee",
        1190,
        80,
        "Earthy, full-bodied, low acidity; a dark roast.",
    ),
    (
        "coffee-espresso-blend",
        "House espresso blend, 1 kg",
        "Coffee",
        3400,
        40,
        "Brazil and Guatemala, built for milk drinks.",
    ),
    (
        "coffee-decaf",
        "Swiss water decaf, 250 g",
        "Coffee",
        1350,
        60,
        "Chemical-free decaffeinated Peruvian coffee.",
    ),
    (
        "coffee-cold-brew",
        "Cold brew packs, 6 pack",
        "Coffee",
        1600,
        75,
        "Pre-ground filter packs for 12-hour cold brew.",
    ),
    (
        "coffee-kenya-aa",
        "Kenya AA, 250 g",
        "Coffee",
        1690,
        35,
        "Blackcurrant, grapefruit, bright and juicy.",
    ),
    (
        "coffee-guatemala",
        "Antigua beans, 250 g",
        "Coffee",
        1250,
        110,
        "Cocoa and spice from volcanic soil.",
    ),
    (
        "coffee-filter-papers",
        "Filter papers, 100",
        "Coffee",
        650,
        300,
        "Unbleached cone filters, size 02.",
    ),
    (
        "coffee-sampler",
        "Origin sampler, 4 x 100 g",
        "Coffee",
        2200,
        25,
        "Four single origins to taste side by side.",
    ),
    (
        "tea-sencha",
        "Sencha, 100 g",
        "Tea",
        990,
        70,
        "Steamed Japanese green tea, grassy and sweet.",
    ),
    (
        "tea-assam",
        "Assam breakfast, 200 g",
        "Tea",
        850,
        140,
        "Malty black tea that takes milk well.",
    ),
    (
        "tea-earl-grey",
        "Earl Grey, 100 g",
        "Tea",
        920,
        90,
        "Black tea scented with Calabrian bergamot.",
    ),
    (
        "tea-oolong",
        "Tie Guan Yin oolong, 100 g",
        "Tea",
        1480,
        45,
        "Floral, lightly oxidised Fujian oolong.",
    ),
    (
        "tea-chamomile",
        "Chamomile flowers, 50 g",
        "Tea",
        700,
        150,
        "Whole Egyptian chamomile blossoms.",
    ),
    (
        "tea-matcha",
        "Ceremonial matcha, 30 g",
        "Tea",
        2400,
        30,
        "Stone-ground Uji matcha for whisking.",
    ),
    (
        "tea-rooibos",
        "Rooibos, 100 g",
        "Tea",
        780,
        85,
        "Caffeine-free South African red bush.",
    ),
    (
        "tea-pu-erh",
        "Aged pu-erh cake, 357 g",
        "Tea",
        3900,
        12,
        "Ten-year-old Yunnan sheng pu-erh.",
    ),
    (
        "tea-mint",
        "Moroccan mint, 100 g",
        "Tea",
        820,
        100,
        "Gunpowder green tea with spearmint.",
    ),
    (
        "tea-infuser",
        "Steel tea infuser",
        "Tea",
        1100,
        200,
        "Fine mesh basket that fits most mugs.",
    ),
    (
        "kitchen-pour-over",
        "Ceramic pour-over dripper",
        "Kitchen",
        2800,
        50,
        "Glazed porcelain, single-cup dripper.",
    ),
    (
        "kitchen-kettle",
        "Gooseneck kettle, 1 l",
        "Kitchen",
        5900,
        30,
        "Stovetop kettle with a precise spout.",
    ),
    (
        "kitchen-grinder",
        "Burr hand grinder",
        "Kitchen",
        8900,
        20,
        "Stainless conical burrs, 40 grind settings.",
    ),
    (
        "kitchen-scale",
        "Brew scale with timer",
        "Kitchen",
        3900,
        45,
        "0.1 g resolution, auto-start timer.",
    ),
    (
        "kitchen-french-press",
        "French press, 8 cup",
        "Kitchen",
        3400,
        40,
        "Borosilicate glass, double steel filter.",
    ),
    (
        "kitchen-mug",
        "Stoneware mug, 350 ml",
        "Kitchen",
        1800,
        160,
        "Hand-glazed, dishwasher safe.",
    ),
    (
        "kitchen-teapot",
        "Cast iron teapot, 0.8 l",
        "Kitchen",
        4600,
        18,
        "Enamelled tetsubin with a steel infuser.",
    ),
    (
        "kitchen-canister",
        "Airtight canister, 500 g",
        "Kitchen",
        2200,
        70,
        "Keeps beans fresh with a one-way valve.",
    ),
    (
        "kitchen-milk-frother",
        "Milk frother",
        "Kitchen",
        2500,
        55,
        "Battery whisk for lattes at home.",
    ),
    (
        "kitchen-tumbler",
        "Insulated tumbler, 470 ml",
        "Kitchen",
        2900,
        65,
        "Keeps drinks hot for six hours.",
    ),
    (
        "books-coffee-atlas",
        "The World Atlas of Coffee",
        "Books",
        3500,
        25,
        "From bean to brew, country by country.",
    ),
    (
        "books-tea-guide",
        "The Tea Enthusiast's Handbook",
        "Books",
        2200,
        30,
        "A guide to the world's best teas.",
    ),
    (
        "books-ddia",
        "Designing Data-Intensive Applications",
        "Books",
        4500,
        40,
        "Reliable, scalable, maintainable systems.",
    ),
    (
        "books-crdt-primer",
        "A Primer on Replicated Data",
        "Books",
        2900,
        15,
        "Conflict-free types from counters to sequences.",
    ),
    (
        "books-salt-fat",
        "Salt, Fat, Acid, Heat",
        "Books",
        3000,
        35,
        "The four elements of good cooking.",
    ),
    (
        "books-bread",
        "Flour Water Salt Yeast",
        "Books",
        2700,
        28,
        "Artisan bread and pizza at home.",
    ),
    (
        "books-ferment",
        "The Art of Fermentation",
        "Books",
        3900,
        10,
        "A deep dive into fermentation the world over.",
    ),
    (
        "books-pragmatic",
        "The Pragmatic Programmer",
        "Books",
        4200,
        33,
        "From journeyman to master, 20th anniversary.",
    ),
    (
        "books-sicp",
        "Structure and Interpretation",
        "Books",
        5500,
        8,
        "Computer programs, the classic text.",
    ),
    (
        "books-field-guide",
        "Field Guide to Birds",
        "Books",
        2400,
        22,
        "Every common bird, illustrated.",
    ),
    (
        "stationery-notebook",
        "Dot-grid notebook, A5",
        "Stationery",
        1600,
        180,
        "160 pages of 100 g/m² paper, lay-flat binding.",
    ),
    (
        "stationery-fountain-pen",
        "Fountain pen, fine nib",
        "Stationery",
        3200,
        45,
        "Steel nib, converter included.",
    ),
    (
        "stationery-ink",
        "Blue-black ink, 50 ml",
        "Stationery",
        1400,
        90,
        "Iron-gall inspired, water resistant.",
    ),
    (
        "stationery-pencils",
        "Graphite pencils, 12",
        "Stationery",
        900,
        200,
        "HB cedar pencils, pre-sharpened.",
    ),
    (
        "stationery-planner",
        "Undated weekly planner",
        "Stationery",
        2100,
        60,
        "52 weeks, start any time.",
    ),
    (
        "stationery-cards",
        "Index cards, 200",
        "Stationery",
        600,
        250,
        "Ruled cards for notes and flashcards.",
    ),
    (
        "stationery-washi",
        "Washi tape set, 6",
        "Stationery",
        1100,
        120,
        "Patterned paper tape for journals.",
    ),
    (
        "stationery-desk-pad",
        "Felt desk pad",
        "Stationery",
        3600,
        30,
        "Wool felt, 80 x 30 cm.",
    ),
    (
        "stationery-stapler",
        "Brass stapler",
        "Stationery",
        2700,
        40,
        "Solid brass, 20-sheet capacity.",
    ),
    (
        "stationery-envelopes",
        "Cotton envelopes, 25",
        "Stationery",
        1300,
        100,
        "Deckle-edged C6 envelopes.",
    ),
    (
        "outdoors-flask",
        "Steel flask, 750 ml",
        "Outdoors",
        3300,
        70,
        "Vacuum insulated, 24 hours cold.",
    ),
    (
        "outdoors-headlamp",
        "Rechargeable headlamp",
        "Outdoors",
        4400,
        50,
        "400 lumens, USB-C charging.",
    ),
    (
        "outdoors-blanket",
        "Picnic blanket",
        "Outdoors",
        3800,
        35,
        "Waterproof backing, folds into a strap.",
    ),
    (
        "outdoors-stove",
        "Camping stove",
        "Outdoors",
        5200,
        25,
        "Folding canister stove, boils in 3 minutes.",
    ),
    (
        "outdoors-mug",
        "Titanium camp mug, 450 ml",
        "Outdoors",
        2600,
        80,
        "Weighs 70 g, folding handles.",
    ),
    (
        "outdoors-hammock",
        "Travel hammock",
        "Outdoors",
        4900,
        30,
        "Parachute nylon with tree straps.",
    ),
    (
        "outdoors-compass",
        "Baseplate compass",
        "Outdoors",
        1900,
        60,
        "Declination adjustment, luminous markings.",
    ),
    (
        "outdoors-dry-bag",
        "Dry bag, 20 l",
        "Outdoors",
        2300,
        90,
        "Roll-top, fully waterproof.",
    ),
    (
        "outdoors-lantern",
        "Collapsible lantern",
        "Outdoors",
        2900,
        45,
        "Solar and USB, packs flat.",
    ),
    (
        "outdoors-seat",
        "Sit pad",
        "Outdoors",
        1500,
        110,
        "Closed-cell foam, folds to a pocket.",
    ),
];

/// City posters, a second series so the catalog holds more products than a cart has lines.
const POSTER_CITIES: &[&str] = &[
    "Lisbon",
    "Porto",
    "Seville",
    "Valencia",
    "Marseille",
    "Lyon",
    "Bordeaux",
    "Antwerp",
    "Ghent",
    "Utrecht",
    "Bremen",
    "Leipzig",
    "Dresden",
    "Krakow",
    "Gdansk",
    "Brno",
    "Graz",
    "Ljubljana",
    "Trieste",
    "Bologna",
    "Turin",
    "Naples",
    "Palermo",
    "Split",
    "Tallinn",
    "Riga",
    "Vilnius",
    "Bergen",
    "Aarhus",
    "Gothenburg",
    "Tampere",
    "Galway",
    "Cork",
    "Edinburgh",
    "Bristol",
    "Kyoto",
    "Osaka",
    "Busan",
    "Taipei",
    "Hanoi",
    "Montreal",
    "Quebec",
    "Oaxaca",
    "Valparaiso",
    "Cusco",
];

fn posters() -> impl Iterator<Item = (String, String, String, i64, i64, String)> {
    POSTER_CITIES.iter().enumerate().map(|(i, city)| {
        (
            format!("poster-{}", city.to_lowercase()),
            format!("{city} city poster"),
            "Prints".to_owned(),
            1900 + (i as i64 % 5) * 300,
            15 + (i as i64 * 7) % 40,
            format!("A 50 x 70 cm risograph print of {city}'s streets, on recycled paper."),
        )
    })
}

/// Every seeded product: (id, name, category, price in cents, stock, description).
fn seed() -> impl Iterator<Item = (String, String, String, i64, i64, String)> {
    SEED.iter()
        .map(|(id, name, category, price, stock, description)| {
            (
                id.to_string(),
                name.to_string(),
                category.to_string(),
                *price,
                *stock,
                description.to_string(),
            )
        })
        .chain(posters())
}

/// The products, in catalog order, with a lookup by id.
#[derive(Debug, Default)]
pub struct Catalog {
    products: Vec<Product>,
    by_id: HashMap<String, usize>,
}

impl Catalog {
    pub fn new(products: Vec<Product>) -> Catalog {
        let by_id = products
            .iter()
            .enumerate()
            .map(|(i, p)| (p.id.clone(), i))
            .collect();
        Catalog { products, by_id }
    }

    pub fn get(&self, id: &str) -> Option<&Product> {
        self.by_id.get(id).map(|&i| &self.products[i])
    }

    pub fn products(&self) -> &[Product] {
        &self.products
    }

    /// Seeds the demo products (a no-op for those present, so edits survive restarts) and
    /// loads the catalog.
    pub async fn load(pool: &AnyPool) -> Result<Catalog, sqlx::Error> {
        let mut tx = pool.begin().await?;
        for (position, (id, name, category, price, stock, description)) in seed().enumerate() {
            sqlx::query(
                "INSERT INTO products (id, name, description, category, unit_price_cents, stock, position)
                 VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (id) DO NOTHING",
            )
            .bind(id)
            .bind(name)
            .bind(description)
            .bind(category)
            .bind(price)
            .bind(stock)
            .bind(position as i64)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        let rows = sqlx::query(
            "SELECT id, name, description, category, unit_price_cents, stock FROM products
             ORDER BY position, id",
        )
        .fetch_all(pool)
        .await?;
        let products = rows
            .iter()
            .map(|row| {
                Ok(Product {
                    id: row.try_get(0)?,
                    name: row.try_get(1)?,
                    description: row.try_get(2)?,
                    category: row.try_get(3)?,
                    unit_price_cents: row.try_get(4)?,
                    stock: row.try_get(5)?,
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()?;
        Ok(Catalog::new(products))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seed_has_more_distinct_priced_products_than_a_cart_has_lines() {
        let seed: Vec<_> = seed().collect();
        assert!(seed.len() > meridian_shared::cart::MAX_LINES);
        let ids: std::collections::HashSet<_> = seed.iter().map(|s| s.0.clone()).collect();
        assert_eq!(ids.len(), seed.len());
        for (id, name, _, price, stock, description) in &seed {
            assert!(
                meridian_shared::realtime::valid_op_id(id) && id.len() <= 40,
                "{id}"
            );
            assert!(!name.is_empty() && !description.is_empty());
            assert!(*price > 0 && *stock >= 0);
        }
    }
}
