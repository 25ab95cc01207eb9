"""Every Conversation API call of the SDK for one conversation (the newest one when no id is given).

    .venv/bin/python examples/sdk_conversation.py [conversation_id]
"""

from __future__ import annotations

import json
import sys

import convoscope_sdk as symbl

if len(sys.argv) > 1:
    conversation_id = sys.argv[1]
else:
    newest = symbl.Conversations.list_conversations(parameters={"order": "desc", "limit": 1})["conversations"]
    if not newest:
        raise SystemExit("no conversations yet: run examples/sdk_streaming.py first")
    conversation_id = newest[0]["id"]

calls = {
    "get_conversation": symbl.Conversations.get_conversation,
    "get_members": symbl.Conversations.get_members,
    "get_messages": symbl.Conversations.get_messages,
    "get_topics": symbl.Conversations.get_topics,
    "get_questions": symbl.Conversations.get_questions,
    "get_action_items": symbl.Conversations.get_action_items,
    "get_follow_ups": symbl.Conversations.get_follow_ups,
    "get_entities": symbl.Conversations.get_entities,
    "get_trackers": symbl.Conversations.get_trackers,
    "get_analytics": symbl.Conversations.get_analytics,
    "get_summary": symbl.Conversations.get_summary,
}
for name, call in calls.items():
    try:
        answer = call(conversation_id)
    except symbl.ApiError as exc:  # the official SDK returned {'message': ...} here, whatever went wrong
        print(f"{name}: HTTP {exc.status} {exc.message}")
        continue
    print(f"{name}: {json.dumps(answer)[:300]}")
