-- An answer cut off by a crash or a link drop has no transcript `done` event, only its deltas;
-- the rebuild (services/gateway/rebuild.py) reads them for the part the user heard.
CREATE INDEX session_events_transcript_deltas ON session_events (session_id, seq)
    WHERE kind = 'model.server.response.output_audio_transcript.delta';
