"""The pages recipients see (unsubscribe, its confirmation, web opt-out, link not found) in their
language: the profile's when known, else the browser's Accept-Language, else English."""
import re
from pathlib import Path

import polib
import pytest
from django.conf import settings
from django.test import Client

from deliveries.tokens import Purpose, make_token
from tests.factories import MessageFactory, ProfileFactory
from tracking.views.base import WEB_COOKIE, WEB_OPT_OUT_COOKIE

QUESTION = {
    "en": "Do you want to stop receiving these emails?",
    "es": "¿Quiere dejar de recibir estos correos electrónicos?",
    "pt": "Deseja deixar de receber estes e-mails?",
    "it": "Vuoi smettere di ricevere queste email?",
    "nl": "Wilt u deze e-mails niet meer ontvangen?",
    "sv": "Vill du sluta få de här e-postmeddelandena?",
}
DONE = {
    "en": "You are unsubscribed", "es": "Se ha dado de baja", "pt": "A sua inscrição foi cancelada",
    "it": "La tua iscrizione è stata annullata", "nl": "U bent afgemeld", "sv": "Din prenumeration är avslutad",
}
NOT_FOUND = {
    "en": "Link not found", "es": "Enlace no encontrado", "pt": "Link não encontrado", "it": "Link non trovato",
    "nl": "Link niet gevonden", "sv": "Länken hittades inte",
}
OPT_OUT_BUTTON = {
    "en": "Do not track this browser", "es": "No rastrear este navegador", "pt": "Não rastrear este navegador",
    "it": "Non tracciare questo browser", "nl": "Deze browser niet volgen", "sv": "Spåra inte den här webbläsaren",
}
LANGUAGES = sorted(QUESTION)


def unsubscribe_path(language: str | None) -> str:
    message = MessageFactory(profile=ProfileFactory(language=language))
    return f"/u/{make_token(Purpose.UNSUBSCRIBE, message.pk)}"


def test_every_page_language_is_a_setting_language():
    assert LANGUAGES == sorted(code for code, _name in settings.LANGUAGES)


@pytest.mark.parametrize("language", LANGUAGES)
def test_unsubscribe_in_the_profiles_language(db, language):
    path = unsubscribe_path(language)
    page = Client(HTTP_ACCEPT_LANGUAGE="en").get(path)  # the profile's language wins over the browser's
    html = page.content.decode()
    assert QUESTION[language] in html and f'<html lang="{language}">' in html
    assert page["Content-Language"] == language
    done = Client(HTTP_ACCEPT_LANGUAGE="en").post(path).content.decode()
    assert DONE[language] in done


@pytest.mark.parametrize("language", LANGUAGES)
def test_unsubscribe_in_the_browsers_language_when_the_profile_has_none(db, language):
    path = unsubscribe_path(None)
    html = Client(HTTP_ACCEPT_LANGUAGE=f"{language}-XX,{language};q=0.9,de;q=0.5").get(path).content.decode()
    assert QUESTION[language] in html
    assert DONE[language] in Client(HTTP_ACCEPT_LANGUAGE=language).post(path).content.decode()


@pytest.mark.parametrize("language", LANGUAGES)
def test_web_opt_out_and_not_found_in_the_browsers_language(db, language):
    browser = Client(HTTP_ACCEPT_LANGUAGE=language)
    assert OPT_OUT_BUTTON[language] in browser.get("/w/opt-out").content.decode()
    missing = browser.get("/u/not-a-token")
    assert missing.status_code == 404 and NOT_FOUND[language] in missing.content.decode()


def web_visitor(profile_language: str | None, browser_language: str) -> Client:
    """A browser that came from a tracked click of a profile (the web cookie the click hands out)."""
    message = MessageFactory(profile=ProfileFactory(language=profile_language))
    browser = Client(HTTP_ACCEPT_LANGUAGE=browser_language)
    browser.cookies[WEB_COOKIE] = make_token(Purpose.CLICK, message.pk, 1)
    return browser


@pytest.mark.parametrize("language", LANGUAGES)
def test_web_opt_out_in_the_language_of_the_profile_who_clicked(db, language):
    browser_language = "nl" if language != "nl" else "es"
    browser = web_visitor(language, browser_language)

    page = browser.get("/w/opt-out")
    assert OPT_OUT_BUTTON[language] in page.content.decode() and OPT_OUT_BUTTON[browser_language] not in page.content.decode()
    assert page["Content-Language"] == language
    opted_out = browser.post("/w/opt-out")
    assert opted_out["Content-Language"] == language and WEB_OPT_OUT_COOKIE in opted_out.cookies


@pytest.mark.parametrize("cookie", ["profile without a language", "not a token", "unknown message"])
def test_web_opt_out_falls_back_to_the_browsers_language(db, cookie):
    browser = web_visitor(None, "sv")
    if cookie == "not a token":
        browser.cookies[WEB_COOKIE] = "x" * 40
    elif cookie == "unknown message":
        browser.cookies[WEB_COOKIE] = make_token(Purpose.CLICK, 10**9, 1)
    page = browser.get("/w/opt-out")
    assert OPT_OUT_BUTTON["sv"] in page.content.decode() and page["Content-Language"] == "sv"


def test_an_unknown_language_gets_english(db):
    assert QUESTION["en"] in Client(HTTP_ACCEPT_LANGUAGE="de-DE,fr;q=0.8").get(unsubscribe_path(None)).content.decode()


def test_every_translation_is_complete():
    templates = Path(settings.BASE_DIR) / "templates" / "tracking"
    wanted = {
        text
        for path in templates.glob("*.html")
        for text in re.findall(r'\{% translate "([^"]+)" %\}', path.read_text())
    }
    assert len(wanted) == 11
    for language in (code for code in LANGUAGES if code != "en"):
        catalog = polib.pofile(str(Path(settings.BASE_DIR) / "locale" / language / "LC_MESSAGES" / "django.po"))
        translated = {entry.msgid for entry in catalog.translated_entries()}
        assert translated == wanted, language
