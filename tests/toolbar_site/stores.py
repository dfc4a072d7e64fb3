from debug_toolbar.store import MemoryStore


class RefusingStore(MemoryStore):
    """Takes what the toolbar's panels store during the request, refuses the complete
    request hopwatch's panel stores when the request is closed."""

    @classmethod
    def save_panel(cls, request_id, panel_id, data=None):
        if panel_id == "HopsPanel" and data and data.get("complete"):
            raise OSError("the store is full")
        return super().save_panel(request_id, panel_id, data)
