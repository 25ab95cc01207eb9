"""The native asyncio client: stream a file, read every event as it arrives, then query the conversation.

    .venv/bin/python examples/sdk_async_streaming.py [call.wav]
"""

from __future__ import annotations

import asyncio
import sys

from _speech import load_speech
from convoscope_sdk import ApiError, AsyncClient


async def main(path: str | None) -> None:
    audio, sample_rate = load_speech(path)
    async with AsyncClient() as client:  # base URL and credentials from arguments, environment or config files
        connection = await client.start_connection(
            speaker={"name": "John", "userId": "john@example.com"},
            insight_types=["question", "action_item"],
            trackers=[{"name": "Deadlines", "vocabulary": ["before Friday", "on Thursday"]}],
            config={"speechRecognition": {"sampleRateHertz": sample_rate}},
        )
        print("conversation", connection.conversation_id)

        async def send() -> None:
            chunk = sample_rate // 10 * 2  # 100 ms
            for offset in range(0, len(audio), chunk):
                await connection.send_audio(audio[offset : offset + chunk])
                await asyncio.sleep(0.1)
            completed = await connection.stop()  # waits until the server has finished the conversation
            print("completed:", completed)

        async def show() -> None:
            async for event in connection.events():  # ends when the connection does
                if event["type"] == "message_response":
                    for message in event["messages"]:
                        print(f"final    {message['payload']['content']}")
                elif event["type"] == "message" and event["message"]["type"] == "recognition_result":
                    if not event["message"]["isFinal"]:
                        print(f"interim  {event['message']['punctuated']['transcript']}")
                elif event["type"] in ("insight_response", "tracker_response", "topic_response", "entity_response"):
                    print(f"{event['type']:<17}{event}")

        async with asyncio.TaskGroup() as group:  # if either fails, the other is cancelled and the error raised
            group.create_task(show())
            group.create_task(send())

        conversation = connection.conversation
        assert conversation is not None
        messages = await conversation.get_messages({"verbose": True})
        print(f"{len(messages['messages'])} messages stored")
        try:
            print("questions:", [q["text"] for q in (await conversation.get_questions())["questions"]])
        except ApiError as exc:  # typed: status and the server's message
            print(f"questions unavailable: {exc.status} {exc.message}")


asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else None))
