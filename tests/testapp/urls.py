from django.urls import path

from tests.testapp import views, views_django6

urlpatterns = [
    path("async/", views.async_view),
    path("sync/", views.sync_view),
    path("file/", views.file_view),
    path("shared/", views.shared_response_view),
    path("class/", views.AsyncClassView.as_view()),
    path("hops/<int:n>/", views.hops_view),
    path("nested/", views.nested_view),
    path("orm/loop/", views.orm_loop_view),
    path("orm/batch/", views.orm_batch_view),
    path("orm/count/", views.orm_count_view),
    path("stream/sync/", views.stream_sync_view),
    path("stream/async/", views.stream_async_view),
    path("error/", views.error_view),
    path("sync-error/", views.sync_error_view),
    path("slow/", views.slow_view),
    path("sleepy/", views.sleepy_async_view),
    path("decorated/", views.decorated_view),
    path("sync-orm/", views.sync_orm_view),
    path("stream/counted/", views.counted_stream_view),
    path("child-tasks/", views.child_task_view),
    path("task/", views.task_view),
    path("upload/", views_django6.upload_view),
    path("check-password/", views_django6.check_password_view),
    path("login/", views_django6.login_view),
    path("paginate/", views_django6.paginate_view),
    path("enqueue/", views_django6.enqueue_view),
    path("cache/", views_django6.cache_view),
    path("aiterator/", views_django6.aiterator_view),
]
