"""Operations of every shape: async and sync, two methods on one path, a parameter."""

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
