#!/usr/bin/env python3
"""Writes the small committed seed corpora under fuzz/corpus/ from the shared
conformance vectors (frames.json, discord_interaction.json). Deterministic; run
from anywhere: python3 fuzz/make_seeds.py [path/to/vectors] (default: spec/vectors)."""
import base64
import json
import os
import random
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
VECTORS = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "..", "spec", "vectors")


def load(name):
    with open(os.path.join(VECTORS, name), encoding="utf-8") as f:
        return json.load(f)


def write(target, name, data):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def line_of(case):
    i = case["input"]
    if "decode" in i:
        return i["decode"].encode("utf-8")
    if "decode_b64" in i:
        return base64.b64decode(i["decode_b64"])
    return None


frames = {c["name"]: c for c in load("frames.json")}
decode_names = [
    "decode_descriptor", "decode_inbound_with_buffer_id", "decode_inbound_numeric_buffer_id",
    "decode_inbound_utf8_bytes", "decode_interrupt_inbound", "decode_passthrough_forward_with_buffer",
    "decode_passthrough_forward_headers_number_yields_empty", "decode_outbound_result_success",
    "decode_going_idle_ack", "decode_echoed_hello", "decode_type_array", "decode_truncated_json",
    "decode_crlf_descriptor", "decode_invalid_utf8",
]
lines = []
for n in decode_names:
    line = line_of(frames[n])
    if line is not None:
        write("decode_line", n, line)
        lines.append(line)

# reassembler: [limit selector][cuts as arbitrary Vec<u8>: (1, len)* 0][bytes]
rng = random.Random(7)
for k in range(6):
    text = b"\n".join(rng.sample(lines, 3)) + (b"\r\n" if k % 2 else b"\npartial")
    cuts = b"".join(bytes([1, rng.randrange(1, 200)]) for _ in range(rng.randrange(0, 5))) + b"\x00"
    write("reassembler", f"frames_{k}", bytes([k % 4]) + cuts + text)

# discord: mode byte 0 = the body as is.
cases = {c["name"]: c for c in load("discord_interaction.json")}
discord_names = [
    "slash_no_options_guild", "slash_subcommand_group_nested", "slash_number_lexical_forms",
    "slash_option_list_and_object_values", "dm_member_and_user_member_wins", "thread_channel_public",
    "button_click_custom_id", "prompt_token_ours_pending_exec_approval", "modal_submit_legacy_action_rows",
    "modal_submit_label_components", "type_as_float_2_0_matches", "duplicate_keys_last_wins",
    "body_with_utf8_bom_rejected", "slash_huge_integer",
]
for n in discord_names:
    f = cases[n]["input"]["forward"]
    if "interaction" in f:
        body = json.dumps(f["interaction"]).encode("utf-8")
    elif "body_utf8" in f:
        body = f["body_utf8"].encode("utf-8")
    else:
        body = base64.b64decode(f["body_b64"])
    write("discord", n, b"\x00" + body)
for k in range(1, 4):
    write("discord", f"structured_{k}", bytes([k]) + bytes(rng.randrange(256) for _ in range(300)))

# session: step choices are read from the bytes; a few random walks to start from.
for k in range(6):
    write("session", f"walk_{k}", bytes(rng.randrange(256) for _ in range(400 + 300 * k)))
