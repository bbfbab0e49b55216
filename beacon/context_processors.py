"""`nav_current`: which section of the main navigation a page belongs to, for `aria-current`."""
from django.http import HttpRequest

# The delivery dashboard at `/` is the deliveries section's own page.
HOME_SECTION = "deliveries"


def navigation(request: HttpRequest) -> dict:
    """A page's section is its path's first segment (`/profiles/7/` is in "profiles"); the value is `page`
    on the section's own page and `true` on the pages below it, as `aria-current` wants them."""
    segment = request.path.strip("/").split("/", 1)[0]
    own_page = request.path == (f"/{segment}/" if segment else "/")
    return {"nav_current": {segment or HOME_SECTION: "page" if own_page else "true"}}
