"""The Symbl guide's SIP example: convoscope dials a SIP URI and streams the call's results.

    .venv/bin/python examples/sdk_telephony.py sip:someone@pbx.example.com

Ctrl-C hangs up. (Try it locally with SIPp answering: sipp -sn uas -i 127.0.0.1 -p 5070, then
sip:test@127.0.0.1:5070.)
"""

from __future__ import annotations

import sys

import convoscope_sdk as symbl

uri = sys.argv[1] if len(sys.argv) > 1 else "sip:test@127.0.0.1:5070"
try:
    connection_object = symbl.Telephony.start_sip(uri=uri, data={"session": {"name": "SIP example"}})
except symbl.ApiError as exc:
    raise SystemExit(f"could not start the call: HTTP {exc.status} {exc.message}") from exc
print("connection", connection_object.connectionId, "conversation",
      connection_object.conversation.get_conversation_id())

events = {
    'transcript_response': lambda response: print('printing the first response ' + str(response)),
    'insight_response': lambda response: print('printing the first response ' + str(response))
}

connection_object.subscribe(events)  # blocks until the call ends; Ctrl-C hangs up
