"""FAQ web pages as sources: fetched politely (:mod:`.fetch`), read into entries (:mod:`.extract`), kept in the
page store beside the index (:mod:`.pages`) and read again by ``rag sync`` (:mod:`.sync`)."""
