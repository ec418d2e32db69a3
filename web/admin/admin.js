// The officer's "decrypt fields" view: lists the sealed registrations the demo registry holds
// and opens one through the key server's batch decrypt (POST /v1/keys/{name}/decrypt), which
// checks each field's ctx and writes the opening to the audit log. Nothing is decrypted here.
import { $, el, notify, tokenSetting, api, joseHeader, unb64u } from "/shared/common.js";

const LABELS = {
  given_name: "Given name", family_name: "Family name", phone: "Phone number", national_id: "National ID",
  date_of_birth: "Date of birth", location: "Village / location", photo: "Document photo",
};
// Photos are shown only as these types: an SVG or HTML "photo" could carry script.
const PHOTO_TYPES = ["image/jpeg", "image/png", "image/webp"];
const token = tokenSetting($("#token-form"), "vouchsafe.admin.token", sessionStorage);
const status = $("#status");
let photoUrls = [];

async function load() {
  try {
    const { items } = await api("/v1/registrations", { token: token() });
    const list = $("#records");
    list.replaceChildren(...items.map((r) => el("li", {},
      el("strong", {}, `Registration ${r.id}`), ` — ${r.fields.length} sealed fields, ${r.mode}, received ${new Date(r.received_at).toLocaleString()} `,
      el("button", { type: "button", class: "secondary", "data-id": r.id, onclick: () => open(r.id) }, `Open ${r.id}`))));
    notify(status, "", items.length ? `${items.length} registrations received.` : "No registrations yet.");
  } catch (e) {
    notify(status, "bad", `Cannot list registrations (${e.code}): ${e.message}`);
  }
}

/** The key a sealed field needs: the name part of its header's kid (`pii.v3` → `pii`). */
const keyName = (jwe) => String(joseHeader(jwe).kid || "").replace(/\.v\d+$/, "");

async function open(id) {
  const panel = $("#record");
  const rows = $("#fields");
  try {
    const record = await api(`/v1/registrations/${encodeURIComponent(id)}`, { token: token() });
    const byKey = new Map();
    for (const [field, jwe] of Object.entries(record.fields)) {
      const name = keyName(jwe);
      if (!byKey.has(name)) byKey.set(name, []);
      byKey.get(name).push({ field, jwe });
    }
    const opened = {};
    for (const [name, items] of byKey) {
      const body = { items: items.map(({ field, jwe }) => ({ jwe, ctx: `registration/${record.id}/${field}` })) };
      const result = await api(`/v1/keys/${encodeURIComponent(name)}/decrypt`, { method: "POST", token: token(), body });
      result.items.forEach((r, i) => { opened[items[i].field] = r; });
    }
    rows.replaceChildren();
    for (const u of photoUrls) URL.revokeObjectURL(u);
    photoUrls = [];
    const order = Object.keys(LABELS);
    const rank = (f) => (order.includes(f) ? order.indexOf(f) : order.length);
    for (const field of Object.keys(record.fields).sort((a, b) => rank(a) - rank(b) || a.localeCompare(b))) {
      const r = opened[field];
      let value;
      if (r.error) value = el("span", { class: "notice bad" }, `${r.error.code}: ${r.error.message}`);
      else if (field === "photo") {
        const type = PHOTO_TYPES.includes(record.meta.photo_type) ? record.meta.photo_type : "image/jpeg";
        const url = URL.createObjectURL(new Blob([unb64u(r.plaintext)], { type }));
        photoUrls.push(url);
        value = el("img", { class: "photo", src: url, alt: "Document photo" });
      } else value = r.text ?? `(${unb64u(r.plaintext).length} bytes)`;
      rows.append(el("tr", { "data-field": field }, el("th", { scope: "row" }, LABELS[field] || field), el("td", {}, value)));
    }
    $("#record-title").textContent = `Registration ${record.id} (sealed ${record.mode}, ${new Date(record.created_at).toLocaleString()})`;
    panel.hidden = false;
    panel.querySelector("h2").tabIndex = -1;
    panel.querySelector("h2").focus();
    await audit();
  } catch (e) {
    notify(status, "bad", `Cannot open registration ${id} (${e.code}): ${e.message}`);
  }
}

/** The newest audit entries (the API pages forward from `after`). */
async function audit() {
  try {
    let entries = [];
    let after = 0;
    for (let page = 0; page < 100; page++) {
      const batch = (await api(`/v1/audit?after=${after}&limit=1000`, { token: token() })).entries;
      if (batch.length) {
        entries = entries.concat(batch).slice(-8);
        after = batch[batch.length - 1].seq;
      }
      if (batch.length < 1000) break;
    }
    $("#audit").replaceChildren(...entries.reverse().map((a) =>
      el("li", {}, `${a.ts} — ${a.actor} — ${a.action} ${a.target} — ${a.outcome}`)));
  } catch (e) {
    $("#audit").replaceChildren(el("li", { class: "hint" }, `Audit log not readable with this token (${e.code}).`));
  }
}

if (!window.isSecureContext) {
  // Decrypted personal data and a decrypt token must not cross the network in clear text.
  notify(status, "bad", "This page shows decrypted personal data: open it over https (or on localhost), not plain http://.");
  $("#load").disabled = true;
} else {
  $("#load").addEventListener("click", () => void load());
  if (token()) void load();
}
document.body.dataset.ready = "true";
