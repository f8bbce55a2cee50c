#!/usr/bin/env python3
"""Writes a small Dutch web shop's own exports, as such a shop really has them, and the answer
key the end-to-end test checks winback against. Deterministic (seeded); run it from this folder
to regenerate. Nothing here is in winback's own format: the files are read through the mapping
files beside them, without any pre-processing.

- klanten.csv       the shop's customer export: `;`, Dutch headers, `dd-mm-jjjj uu:mm` dates,
                    phones as people type them (`06-12345678`, `n.v.t.`), country names
                    (`Nederland`, `België`, `Duitsland`, `Polska`), a newsletter tick box
                    (`ja`, `nee`, `alleen klant`), and an account `Status` column.
- bestellingen.csv  the order export: `€ 1.234,56`, Dutch statuses (`Voltooid`, `Geannuleerd`,
                    `Terugbetaald`, `In behandeling`), a shipping `Status` column that must be
                    ignored, and a payment status that means the order status.
- nieuwsbrief.csv   a Mailchimp-style audience export: `Email Address`, `Status`
                    (subscribed, unsubscribed, cleaned, pending, transactional), LAST_CHANGED.
- expected.json     the answer key: which addresses a first campaign may mail (their consent in
                    force, folded from every record that carries the address by the README's
                    rules, computed here independently), and who must stay several people.

People in it: ordinary customers; couples and families at one address (different first names:
several people); 60 employees of one office (`Zuidplein 100`, shared family names: never one
person); people with a private and a work address who share a mobile number (one person);
customers who later unsubscribed in the mail tool (never mailed), newsletter-only subscribers,
addresses the mail tool cleaned after bounces.
"""
import csv, json, random
from datetime import datetime, timedelta

R = random.Random(20260601)
FIRST = ["Jan", "Marieke", "Pieter", "Sanne", "Daan", "Emma", "Lucas", "Julia", "Sem", "Tess",
         "Noah", "Lotte", "Bram", "Fleur", "Thijs", "Anouk", "Ruben", "Iris", "Jesse", "Lieke",
         "Milan", "Eva", "Thomas", "Roos", "Niels", "Femke", "Joris", "Maud", "Koen", "Vera"]
LAST = ["de Jong", "Jansen", "de Vries", "van den Berg", "van Dijk", "Bakker", "Janssen",
        "Visser", "Smit", "Meijer", "de Boer", "Mulder", "de Groot", "Bos", "Vos", "Peters",
        "Hendriks", "van Leeuwen", "Dekker", "Brouwer", "Kowalski", "Nowak", "Wiśniewska"]
STREETS = ["Keizersgracht", "Prinsengracht", "Dorpsstraat", "Kerkstraat", "Molenweg",
           "Schoolstraat", "Julianalaan", "Beatrixstraat", "Stationsweg", "Nieuwstraat"]
CITIES = [("Amsterdam", "10"), ("Rotterdam", "30"), ("Utrecht", "35"), ("Den Haag", "25"),
          ("Eindhoven", "56"), ("Groningen", "97"), ("Zwolle", "80"), ("Haarlem", "20")]
CATEGORIES = ["mode", "schoenen", "accessoires", "huishouden"]
END = datetime(2025, 6, 1, 12, 0)

def nl_date(d):
    return d.strftime("%d-%m-%Y %H:%M")

def euro(cents):
    whole, frac = divmod(cents, 100)
    s = f"{whole:,}".replace(",", ".")
    return f"€ {s},{frac:02d}"

def phone_nl(n):
    return f"06-{n:08d}"

def e164(n):
    return f"+316{n:08d}"

def slug(s):
    return (s.lower().replace(" ", "").replace("ś", "s").replace("ń", "n"))

people = []   # each: dict(first,last,records=[...], buyer)
records = []  # klanten rows
newsletter = []
orders = []
next_id = [70000]
next_phone = [10000000]

def new_customer_id():
    next_id[0] += R.randint(1, 3)
    return str(next_id[0])

def new_phone():
    next_phone[0] += R.randint(1, 50)
    return next_phone[0]

def address():
    city, pc = R.choice(CITIES)
    return (f"{R.choice(STREETS)} {R.randint(1, 220)}", f"{pc}{R.randint(10, 99)} {R.choice('ABCDEFGHJKLMNPRSTVWXZ')}{R.choice('ABCDEFGHJKLMNPRSTVWXZ')}", city)

def add_record(person, email, phone, addr, country, newsletter_box, created):
    rid = new_customer_id()
    street, pc, city = addr if addr else ("", "", "")
    records.append({
        "Klantnummer": rid, "Voornaam": person["first"], "Achternaam": person["last"],
        "E-mailadres": email, "Telefoon": phone, "Straat": street, "Postcode": pc,
        "Plaats": city, "Land": country, "Aangemaakt": nl_date(created),
        "Nieuwsbrief": newsletter_box, "Status": R.choice(["actief", "actief", "actief", "inactief"]),
    })
    person["records"].append({"id": rid, "email": email, "box": newsletter_box, "created": created})
    return rid

def add_orders(person, rid, n, first_day):
    """A first order soon after the account was made, then repeat orders at the customer's own
    rate until they drift away (heterogeneous Poisson purchases, exponential lifetimes): some
    stay, many lapse, as in any shop. `n` only caps the count."""
    rate = R.gammavariate(0.6, 1 / 40)       # orders per day, very different per customer
    # After each order a customer may drift away for good, with a chance of their own (the
    # CDNOW customers' mix: most stay a while, some leave after a first order).
    leave = R.betavariate(0.8, 2.4)
    d = first_day + timedelta(days=R.randint(0, 10), hours=R.randint(0, 8))
    for k in range(max(n, 1) * 4):
        if k > 0:
            if R.random() < leave:
                break
            d = d + timedelta(days=R.expovariate(rate), hours=R.randint(0, 8))
        if d > END - timedelta(days=1):
            break
        cents = R.choice([1995, 2450, 3999, 4995, 7450, 12900, 24999, 123456])
        status = R.choices(["Voltooid", "Geannuleerd", "Terugbetaald", "In behandeling"], [88, 5, 4, 3])[0]
        person["last_activity"] = max(person.get("last_activity", d), d)
        orders.append({"Bestelnummer": f"NL-{len(orders) + 100001}", "Klantnummer": rid,
                       "Besteldatum": d.strftime("%d-%m-%Y"), "Totaalbedrag": euro(cents),
                       "Korting": euro(R.choice([0, 0, 0, 500, 1000])),
                       "Status": R.choice(["Verzonden", "Afgeleverd", "Open"]),
                       "Betaalstatus": status, "Categorie": R.choice(CATEGORIES)})
        if status in ("Voltooid", "In behandeling"):
            person["buyer"] = True

def person(first=None, last=None):
    p = {"first": first or R.choice(FIRST), "last": last or R.choice(LAST), "records": [], "buyer": False}
    people.append(p)
    return p

country_of = lambda: R.choices(["Nederland", "Nederland", "Nederland", "België", "Duitsland", "Polska", "NL"], [50, 20, 10, 8, 5, 4, 3])[0]

# 1. Ordinary customers.
for i in range(260):
    p = person()
    email = f"{slug(p['first'])}.{slug(p['last'])}{i}@{R.choice(['gmail.com', 'outlook.com', 'ziggo.nl', 'kpnmail.nl', 'hotmail.com'])}"
    phone = R.choice([phone_nl(new_phone()), phone_nl(new_phone()), "n.v.t.", ""])
    created = END - timedelta(days=R.randint(200, 1400))
    box = R.choices(["ja", "nee", "alleen klant"], [45, 35, 20])[0]
    rid = add_record(p, email, phone, address(), country_of(), box, created)
    add_orders(p, rid, R.randint(1, 9), created)

# 2. Households: two different first names at one address, one family name.
for i in range(30):
    last = R.choice(LAST)
    addr = address()
    for first in R.sample(FIRST, 2):
        p = person(first, last)
        created = END - timedelta(days=R.randint(200, 1200))
        rid = add_record(p, f"{slug(first)}{i}.{slug(last)}@ziggo.nl", phone_nl(new_phone()), addr, "Nederland", R.choice(["ja", "nee"]), created)
        add_orders(p, rid, R.randint(1, 5), created)

# 3. The office: 60 accounts at Zuidplein 100, six family names, each a different first name.
office = ("Zuidplein 100", "3083 CW", "Rotterdam")
for i in range(60):
    last = ["de Jong", "Jansen", "de Vries", "Bakker", "Visser", "Smit"][i % 6]
    first = FIRST[(i // 6) + (i % 6) * 3 % 30]
    p = person(first, last)
    created = END - timedelta(days=R.randint(100, 900))
    rid = add_record(p, f"{slug(first)}.{slug(last)}.{i}@kantoor-zuidplein.nl", "010-1234567", office, "Nederland", "nee", created)
    add_orders(p, rid, R.randint(1, 3), created)

# 4. A private and a work account of one person, sharing a mobile number.
for i in range(25):
    p = person()
    n = new_phone()
    created = END - timedelta(days=R.randint(300, 1300))
    rid = add_record(p, f"{slug(p['first'])}{i}@gmail.com", phone_nl(n), address(), "Nederland", "ja", created)
    add_orders(p, rid, R.randint(1, 4), created)
    rid2 = add_record(p, f"{slug(p['first'])}.{slug(p['last'])}{i}@werk-bv.nl", e164(n).replace("+31", "+31 "), None, "", "nee", created + timedelta(days=40))
    add_orders(p, rid2, R.randint(1, 3), created + timedelta(days=40))

# 5. The mail tool: subscribers with statuses, many of them shop customers.
def nl_row(email, first, last, status, changed):
    newsletter.append({"Email Address": email, "First Name": first, "Last Name": last,
                       "MEMBER_RATING": R.randint(1, 5), "OPTIN_TIME": (changed - timedelta(days=R.randint(1, 400))).strftime("%Y-%m-%d %H:%M:%S"),
                       "LAST_CHANGED": changed.strftime("%Y-%m-%d %H:%M:%S"), "Status": status,
                       "TAGS": R.choice(["", "klant", "actie2024"])})

for p in people:
    for r in p["records"]:
        if R.random() < 0.45:
            status = R.choices(["subscribed", "unsubscribed", "cleaned", "pending", "transactional"], [50, 25, 8, 7, 10])[0]
            changed = r["created"] + timedelta(days=R.randint(1, 500))
            changed = min(changed, END - timedelta(days=2))
            # Mail tools keep the address as typed, in any case.
            email = r["email"] if R.random() < 0.8 else r["email"].upper()
            nl_row(email, p["first"], p["last"], status, changed)
for i in range(60):
    first, last = R.choice(FIRST), R.choice(LAST)
    nl_row(f"lezer{i}.{slug(last)}@gmail.com", first, last,
           R.choices(["subscribed", "unsubscribed", "pending"], [70, 20, 10])[0],
           END - timedelta(days=R.randint(5, 700)))

# The answer key: each address's statement in force, by the README's rules (latest wins; a
# withdrawal is undone only by a later explicit opt-in; `none` is no statement; soft opt-in
# only for buyers), folded over every record that carries the address.
BOX = {"ja": "opt_in", "nee": "none", "alleen klant": "soft_opt_in"}
MC = {"subscribed": "opt_in", "unsubscribed": "withdrawn", "cleaned": "withdrawn", "pending": "none", "transactional": "none"}
RANK = {"none": 0, "opt_in": 1, "soft_opt_in": 2, "withdrawn": 3}
statements = {}   # key -> list of (time, status)
buyer_of = {}
for p in people:
    for r in p["records"]:
        k = r["email"].lower()
        statements.setdefault(k, []).append((r["created"].replace(second=0), BOX[r["box"]]))
        buyer_of[k] = buyer_of.get(k, False) or p["buyer"]
for n in newsletter:
    k = n["Email Address"].lower()
    statements.setdefault(k, []).append((datetime.strptime(n["LAST_CHANGED"], "%Y-%m-%d %H:%M:%S"), MC[n["Status"]]))

def fold(history):
    cur = None
    for _, s in sorted(history, key=lambda x: (x[0], RANK[x[1]])):
        if cur == "withdrawn" and s != "opt_in":
            continue
        if s == "none" and cur is not None and cur != "none":
            continue
        cur = s
    return cur

in_force = {k: fold(h) for k, h in statements.items()}
# The always-on worker first applies the 36-month retention policy: a person with no activity
# since 2022-06-02 12:00 (Amsterdam; the run is at 2025-06-02 12:00) is erased before any send.
# Activity is an order or the record's creation; a record the mail tool's import created counts
# from that import, so everyone on the newsletter list stays.
CUTOFF = datetime(2022, 6, 2, 12, 0)
on_list = {n["Email Address"].lower() for n in newsletter}
def erased(p):
    if any(r["email"].lower() in on_list for r in p["records"]):
        return False
    last = max([r["created"] for r in p["records"]] + ([p["last_activity"]] if "last_activity" in p else []))
    return last < CUTOFF
# A person (after merging private and work records by their shared number) is mailed at their
# first address in record order that may receive marketing. Newsletter-only readers have no
# order, so a soft opt-in never covers them (they have none).
mailable = []
for p in people:
    if erased(p):
        continue
    for r in p["records"]:
        k = r["email"].lower()
        s = in_force.get(k)
        if s == "opt_in" or (s == "soft_opt_in" and p["buyer"]):
            mailable.append(k)
            break
shop_keys = {r["email"].lower() for p in people for r in p["records"]}
for k, s in in_force.items():
    if k not in shop_keys and s == "opt_in":
        mailable.append(k)

with open("klanten.csv", "w", newline="", encoding="utf-8") as f:
    w = csv.DictWriter(f, fieldnames=list(records[0].keys()), delimiter=";")
    w.writeheader(); w.writerows(records)
with open("bestellingen.csv", "w", newline="", encoding="utf-8") as f:
    w = csv.DictWriter(f, fieldnames=list(orders[0].keys()), delimiter=";")
    w.writeheader(); w.writerows(orders)
with open("nieuwsbrief.csv", "w", newline="", encoding="utf-8") as f:
    w = csv.DictWriter(f, fieldnames=list(newsletter[0].keys()))
    w.writeheader(); w.writerows(newsletter)
with open("expected.json", "w", encoding="utf-8") as f:
    json.dump({
        "customer_records": len(records),
        "orders": len(orders),
        "newsletter_rows": len(newsletter),
        "people": len(people) + sum(1 for k in in_force if k not in shop_keys),
        "office_accounts": 60,
        "erased_by_retention": sum(1 for p in people if erased(p)),
        "mailable": sorted(mailable),
        "withdrawn_addresses": sorted(k for k, s in in_force.items() if s == "withdrawn"),
    }, f, indent=1)
print(len(records), "customer records,", len(orders), "orders,", len(newsletter), "newsletter rows,", len(mailable), "mailable")
