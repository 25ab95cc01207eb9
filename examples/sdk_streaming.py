"""The Symbl guide's streaming example, unchanged except for the import line.

    .venv/bin/python -m convoscope up &          # saves .convoscope/credentials.json, which the SDK finds
    .venv/bin/python examples/sdk_streaming.py [call.wav]

Elsewhere set CONVOSCOPE_BASE_URL and CONVOSCOPE_APP_ID/CONVOSCOPE_APP_SECRET (or keep SYMBL_APP_ID/...).
"""

from __future__ import annotations

import sys
import time

import convoscope_sdk as symbl  # was: import symbl
from _speech import load_speech

audio, sample_rate = load_speech(sys.argv[1] if len(sys.argv) > 1 else None)

connection_object = symbl.Streaming.start_connection(
    insight_types=["question", "action_item"],
    speaker={"name": "John", "userId": "john@example.com"},
    config={"speechRecognition": {"sampleRateHertz": sample_rate}},
)

events = {
    "message_response": lambda response: print(
        "Final Messages -> ",
        [message["payload"]["content"] for message in response["messages"]],
    ),
    "message": lambda response: print(
        "live transcription: {}".format(
            response["message"]["punctuated"]["transcript"]
        )
    )
    if "punctuated" in response["message"]
    else print(response),
    "insight_response": lambda response: [
        print(
            "Insights Item of type {} detected -> {}".format(
                insight["type"], insight["payload"]["content"]
            )
        )
        for insight in response["insights"]
    ],
    "topic_response": lambda response: [
        print(
            "Topic detected -> {} with root words, {}".format(
                topic["phrases"], topic["rootWords"]
            )
        )
        for topic in response["topics"]
    ],
}

connection_object.subscribe(events)

# The guide calls connection_object.send_audio_from_mic(); this sends a file at the pace of speech instead.
chunk = sample_rate // 10 * 2  # 100 ms of 16-bit audio
for offset in range(0, len(audio), chunk):
    connection_object.send_audio(audio[offset : offset + chunk])
    time.sleep(0.1)

connection_object.stop()

conversation = connection_object.conversation
print("conversation", conversation.get_conversation_id())
for message in conversation.get_messages().messages:  # the official SDK's attribute style still works
    print(f"  {message['from'].get('name')}: {message.text}")
