#!/usr/bin/env python3
"""Verifies every DKIM-Signature of a message with dkimpy, an independent implementation.

Usage: dkim_verify.py MESSAGE KEYS.json, where KEYS.json maps "selector._domainkey.domain." to
the TXT record a DNS lookup would return. Prints one line per signature, top to bottom:
"ok a=ALGORITHM s=SELECTOR" or "fail a=ALGORITHM s=SELECTOR".
"""
import json
import re
import sys

import dkim

message = open(sys.argv[1], "rb").read()
records = json.load(open(sys.argv[2]))


def dns(name, timeout=5):
    return records.get(name.decode() if isinstance(name, bytes) else name, "").encode()


head = message.split(b"\r\n\r\n", 1)[0].decode()
count = len(re.findall(r"^DKIM-Signature:", head, flags=re.M | re.I))
d = dkim.DKIM(message)
for i in range(count):
    ok = d.verify(idx=i, dnsfunc=dns)
    sig = dict(d.signature_fields) if d.signature_fields else {}
    alg = sig.get(b"a", b"?").decode()
    sel = sig.get(b"s", b"?").decode()
    print(("ok" if ok else "fail") + f" a={alg} s={sel}")
