"""Operations of every shape: async and sync, two methods on one path (async and sync),
a parameter."""

from __future__ import annotations

from ninja import NinjaAPI

api = NinjaAPI(urls_namespace="shop-api")


@api.get("/datasets/")
async def list_datasets(request):
    return {"datasets": []}


@api.post("/datasets/")
async def create_dataset(request):
    return {"created": True}


@api.get("/datasets/{pk}/")
def get_dataset(request, pk: int):
    return {"pk": pk}


@api.get("/health/")
def health(request):
    return {"ok": True}


# Two sync operations on one path: ninja's one dispatcher for both, each request's
# operation picked by its method.
@api.get("/orders/")
def list_orders(request):
    return {"orders": []}


@api.post("/orders/")
def create_order(request):
    return {"created": True}


@api.get("/customers/")
async def list_customers(request):
    return {"customers": []}


# An async GET and a sync POST on one path: ninja's dispatcher is async, and it calls
# the sync operation through its own sync_to_async (a hop inside ninja, not the handler's).
@api.get("/invoices/")
async def list_invoices(request):
    return {"invoices": []}


@api.post("/invoices/")
def create_invoice(request):
    return {"created": True}
