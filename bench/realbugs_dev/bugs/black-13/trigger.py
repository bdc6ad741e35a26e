import os
import sentry_sdk
sentry_sdk.init(dsn=os.environ["SENTRY_DSN"], release=os.environ["SENTRY_RELEASE"],
                include_local_variables=True, default_integrations=True)

# A code-review bot: formats the files of a pull request with black and posts a diff.
import black

PULL_REQUEST_FILES = [
    {
        "filename": "worker/pages.py",
        "content": (
            "def all_pages(client, url):\n"
            "    return (page async for page in client.paginate(url))\n"
        ),
    },
]


def suggest_formatting(content: str, line_length: int = 88) -> str:
    return black.format_str(content, line_length=line_length)


for f in PULL_REQUEST_FILES:
    print(f["filename"])
    print(suggest_formatting(f["content"]))
