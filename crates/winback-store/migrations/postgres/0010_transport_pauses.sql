-- The circuit breaker of each channel's transport (the SMTP relay, the SMS provider): after a
-- failure about the transport itself (authentication, policy, reputation, throttling, content,
-- connection) sends on that channel wait until `paused_until`; a successful send resumes it.
-- No recipient is suppressed for a transport failure.
CREATE TABLE transport_pauses (
    channel      TEXT   PRIMARY KEY,
    reason       TEXT   NOT NULL,
    failures     BIGINT NOT NULL,
    paused_since BIGINT NOT NULL,
    paused_until BIGINT NOT NULL
);
