"""A function-based middleware (a factory returning a closure), sync-only as Django
makes a plain function: tests/test_function_middleware.py."""


def legacy_stamp(get_response):
    def middleware(request):
        response = get_response(request)
        response["X-Legacy-Stamp"] = "1"
        return response

    return middleware
