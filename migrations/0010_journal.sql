-- The writer's journal: one row per committed batch of decisions (verification states, send
-- attempts and admissions, JSON), applied to their tables later, in `id` order, and deleted
-- (src/engine/writer.rs). Appending one row is the writer's whole cost at speed.
CREATE TABLE journal (
    id    INTEGER PRIMARY KEY,
    items INTEGER NOT NULL,
    body  TEXT NOT NULL
);
