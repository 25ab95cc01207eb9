"""Talk-time analytics: pure computation (talk_time), live per-conversation state (state), Symbl's JSON shape
(report) and the stream processor (worker, ``convoscope worker analytics``)."""
