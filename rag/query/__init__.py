"""The query side: ranking, the decision to answer, suggest or decline, the extractive answer, and the
service every channel asks (:class:`~rag.query.service.QueryService`). It only reads index versions."""
