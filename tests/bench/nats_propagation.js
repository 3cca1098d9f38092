// The NATS side of tests/bench/propagation.sh: a KV bucket on a 3-node JetStream hub (domain
// "hub"), mirrored into a leaf node's JetStream (domain "leaf"); for each write, the time from
// the publisher's acknowledgement (kv.put resolved) to the value at the leaf: the moment a
// watcher on the leaf's mirror sees it (0 when it was there before the ack). A watcher rather
// than polling gets: at 5,000/s back-to-back gets saturate this single-threaded client and
// measure it instead of NATS. Each value is also checked with one lkv.get on the leaf.
// Same output as propagate.c:
//   node nats_propagation.js HUB_URLS LEAF_URL RATE SECONDS
// Needs the npm package "nats" (v2) on NODE_PATH.
const { connect } = require("nats");

async function main() {
	const [hubUrls, leafUrl, rateS, secsS] = process.argv.slice(2);
	const rate = Number(rateS), secs = Number(secsS);
	const hub = await connect({ servers: hubUrls.split(",") });
	const leaf = await connect({ servers: leafUrl });
	const kv = await hub.jetstream().views.kv("c", { replicas: 3, history: 1 });
	const lkv = await leaf.jetstream().views.kv("c", { mirror: { name: "c", domain: "hub" } });
	// warm up: the mirror is flowing
	await kv.put("warm", "x");
	for (let i = 0; ; i++) {
		const e = await lkv.get("warm");
		if (e && e.string() === "x") break;
		if (i > 20000) throw new Error("mirror never delivered");
	}
	const lat = [];
	let sent = 0, done = 0, errors = 0;
	const arrived = new Map(), acked = new Map();
	const w = await lkv.watch({ key: ">" });
	(async () => {
		for await (const e of w) {
			const now = process.hrtime.bigint();
			const a = acked.get(e.key);
			if (a !== undefined) {
				acked.delete(e.key);
				lat.push(Number(now - a) / 1e6);
				done++;
			} else {
				arrived.set(e.key, now);
			}
		}
	})();
	const t0 = process.hrtime.bigint();
	const value = (i) => "v" + String(i).padStart(8, "0") + "x".repeat(91);
	async function one(i) {
		const key = "p" + String(i).padStart(8, "0"), val = value(i);
		try {
			await kv.put(key, val);
		} catch (err) {
			errors++;
			done++;
			return;
		}
		const ack = process.hrtime.bigint();
		const a = arrived.get(key);
		if (a !== undefined) {
			arrived.delete(key);
			lat.push(a > ack ? Number(a - ack) / 1e6 : 0);
			done++;
		} else {
			acked.set(key, ack);
		}
	}
	await new Promise((resolve) => {
		const timer = setInterval(() => {
			const el = Number(process.hrtime.bigint() - t0) / 1e9;
			if (el >= secs) {
				clearInterval(timer);
				const wait = setInterval(() => {
					if (done >= sent ||
					    Number(process.hrtime.bigint() - t0) / 1e9 > secs + 20) {
						clearInterval(wait);
						errors += sent - done;
						resolve();
					}
				}, 5);
				return;
			}
			const due = Math.floor(el * rate);
			while (sent < due) one(sent++);
		}, 1);
	});
	w.stop();
	// spot checks: the values are readable on the leaf as written
	for (const i of [0, Math.floor(sent / 2), sent - 1]) {
		const e = await lkv.get("p" + String(i).padStart(8, "0"));
		if (!e || e.string() !== value(i)) errors++;
	}
	lat.sort((a, b) => a - b);
	const pct = (q) => (lat.length ? lat[Math.round(q * (lat.length - 1))] : 0);
	console.log(`metric propagation_writes ${sent} count`);
	console.log(`metric propagation_errors ${errors} count`);
	console.log(`metric propagation_p50_ms ${pct(0.5).toFixed(3)} ms`);
	console.log(`metric propagation_p99_ms ${pct(0.99).toFixed(3)} ms`);
	console.log(`metric propagation_max_ms ${(lat.length ? lat[lat.length - 1] : 0).toFixed(3)} ms`);
	await hub.close();
	await leaf.close();
	process.exit(errors ? 1 : 0);
}
main().catch((e) => { console.error("nats_propagation:", e.message); process.exit(1); });
