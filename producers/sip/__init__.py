"""Telephony: the SIP gateway process (gateway.py) and the Telephony API routes of the HTTP gateway (api.py).

The pure parts (codecs, rtp, jitter, media, sdp, access, requests, status) know nothing of sockets or Kafka.
Import submodules directly; this package imports nothing so the HTTP gateway never loads the SIP stack.
"""
