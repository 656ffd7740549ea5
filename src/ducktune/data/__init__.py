"""Data: read files in the formats people have, validate them, normalize to chats, template and mask."""
