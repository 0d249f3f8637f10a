-- A model link is rebuilt from the log (services/gateway/rebuild.py), and a new holder reads
-- how the previous one left (services/gateway/handover.py). Both read a handful of kinds out of
-- a log that is mostly audio events: half a million rows in an hour-long session. This partial
-- index holds only those kinds, so a rebuild of an hour reads a few thousand index entries.
CREATE INDEX session_events_conversation ON session_events (session_id, seq)
    WHERE kind IN (
        'client.text',
        'client.screen_state',
        'client.attach',
        'client.detached',
        'session.ended',
        'gateway.lost',
        'model.server.input_audio_buffer.committed',
        'model.server.conversation.item.input_audio_transcription.completed',
        'model.server.response.output_item.added',
        'model.server.response.output_audio_transcript.done',
        'model.server.response.function_call_arguments.done',
        'decision.truncated',
        'decision.item_deleted',
        'decision.playback_done',
        'decision.tool_output',
        'decision.tool_dropped'
    );
