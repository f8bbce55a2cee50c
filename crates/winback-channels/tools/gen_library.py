#!/usr/bin/env python3
"""Writes the starter template library (templates/<locale>/<name>.mjml) and src/library.rs.

The library is data: edit the table below and re-run `python3 tools/gen_library.py` from the
crate folder. Templates are minijinja over MJML; every value is HTML-escaped when rendered.
"""
import os

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

FOOTER = {
    "en": ("You receive this email because you are a customer of {{ shop }}.",
           "Email preferences (fewer emails is an option)", "Unsubscribe"),
    "nl": ("Je ontvangt deze e-mail omdat je klant bent bij {{ shop }}.",
           "E-mailvoorkeuren (minder e-mails kan ook)", "Afmelden"),
    "pl": ("Otrzymujesz tę wiadomość, ponieważ robisz zakupy w {{ shop }}.",
           "Preferencje e-mail (możesz wybrać rzadsze wiadomości)", "Wypisz się"),
}
# The add-to-wallet button, shown when the journey issued the contact a wallet pass.
WALLET = {
    "en": "Add to your wallet",
    "nl": "Toevoegen aan je wallet",
    "pl": "Dodaj do portfela",
}
HELLO = {
    "en": 'Hi {{ first_name | default("there") }},',
    "nl": 'Hoi {{ first_name | default("daar") }},',
    "pl": 'Cześć {{ first_name | default("") }},',
}
OFFER = {
    "en": ("Your code", "valid until", "on orders from"),
    "nl": ("Jouw code", "geldig tot", "bij bestellingen vanaf"),
    "pl": ("Twój kod", "ważny do", "przy zamówieniach od"),
}
PRODUCTS = {"en": "You looked at:", "nl": "Je bekeek:", "pl": "Oglądane produkty:"}
SURVEY = {
    "en": ("Why did you stop shopping with us? One click is enough:", [
        ("too_many_emails", "Too many emails"), ("not_relevant", "Not relevant for me"),
        ("price", "Too expensive"), ("quality", "Quality was disappointing"),
        ("competitor", "I found another shop"), ("other", "Something else")]),
    "nl": ("Waarom koop je niet meer bij ons? Eén klik is genoeg:", [
        ("too_many_emails", "Te veel e-mails"), ("not_relevant", "Niet relevant voor mij"),
        ("price", "Te duur"), ("quality", "De kwaliteit viel tegen"),
        ("competitor", "Ik heb een andere winkel gevonden"), ("other", "Iets anders")]),
    "pl": ("Co sprawiło, że nie robisz już u nas zakupów? Wystarczy jedno kliknięcie:", [
        ("too_many_emails", "Za dużo e-maili"), ("not_relevant", "Nieistotne dla mnie"),
        ("price", "Za drogo"), ("quality", "Jakość mnie rozczarowała"),
        ("competitor", "Kupuję w innym sklepie"), ("other", "Coś innego")]),
}
REPERMISSION = {
    # "Fewer" is the preference centre's rule: at most one marketing email per two weeks.
    "en": ("Yes, keep me subscribed", "Fewer emails: one every two weeks"),
    "nl": ("Ja, ik blijf ingeschreven", "Minder e-mails: één per twee weken"),
    "pl": ("Tak, zostaję", "Rzadziej: jeden e-mail na dwa tygodnie"),
}

# name: flags, then per locale (default subject, heading, paragraphs, call to action).
T = {
 "we-miss-you": ("offer", {
   "en": ("{{ first_name | default('Hey') }}, we miss you!", "We miss you", ["It has been a while since your last visit, and we have kept a few things aside for you.", "Come and see what is new — we would love to see you again."], "See what is new"),
   "nl": ("{{ first_name | default('Hé') }}, we missen je!", "We missen je", ["Het is een tijdje geleden sinds je laatste bezoek, en we hebben iets voor je apart gelegd.", "Kom kijken wat er nieuw is — we zien je graag terug."], "Bekijk wat er nieuw is"),
   "pl": ("{{ first_name | default('Hej') }}, tęsknimy za Tobą!", "Tęsknimy za Tobą", ["Minęło trochę czasu od Twojej ostatniej wizyty, a my odłożyliśmy coś dla Ciebie.", "Zobacz, co nowego — chętnie znów Cię zobaczymy."], "Zobacz nowości")}),
 "ask-why": ("survey", {
   "en": ("Can we ask you something?", "Tell us what we can do better", ["We noticed you have not shopped with us for a while. Your answer helps us improve — and we read every one."], "Visit the shop"),
   "nl": ("Mogen we je iets vragen?", "Geef ons je mening", ["We merken dat je al een tijd niet meer bij ons hebt besteld. Jouw antwoord helpt ons beter te worden — we lezen ze allemaal."], "Naar de winkel"),
   "pl": ("Czy możemy o coś zapytać?", "Powiedz nam, co możemy poprawić", ["Zauważyliśmy, że od dawna nie było Cię u nas na zakupach. Twoja odpowiedź pomoże nam się poprawić — czytamy każdą."], "Odwiedź sklep")}),
 "price-offer": ("offer", {
   "en": ("You told us why. Here is something for you", "Thank you for telling us", ["You told us the price held you back. Here is a discount on your next order."], "Use my discount"),
   "nl": ("Je vertelde ons waarom. Dit is voor jou", "Bedankt voor je antwoord", ["Je gaf aan dat de prijs je tegenhield. Hier is korting op je volgende bestelling."], "Gebruik mijn korting"),
   "pl": ("Dziękujemy za odpowiedź. To dla Ciebie", "Dziękujemy za odpowiedź", ["Dziękujemy za odpowiedź: powstrzymywała Cię cena. Oto rabat na następne zamówienie."], "Użyj rabatu")}),
 "retention-notice": ("", {
   "en": ("Do you want to keep your account?", "Do you want to keep your account?", ["We have not seen you for almost three years. We keep personal data only while it is of use to you, so in 30 days we will delete your account details, your address and your order history with us.", "If we do not hear from you, you need not do anything.", "If you would like to stay, one click is enough."], "Yes, keep my account"),
   "nl": ("Wil je je account houden?", "Wil je je account houden?", ["We hebben je al bijna drie jaar niet gezien. We bewaren persoonsgegevens alleen zolang je er iets aan hebt, dus over 30 dagen verwijderen we je accountgegevens, je adres en je bestelgeschiedenis bij ons.", "Horen we niets van je, dan hoef je niets te doen.", "Wil je blijven? Eén klik is genoeg."], "Ja, ik wil mijn account houden"),
   "pl": ("Czy chcesz zachować swoje konto?", "Czy chcesz zachować swoje konto?", ["Nie widzieliśmy się od prawie trzech lat. Przechowujemy dane osobowe tylko wtedy, gdy są Ci potrzebne, dlatego za 30 dni usuniemy dane Twojego konta, adres i historię zamówień.", "Jeśli nie odpowiesz, nie musisz nic robić.", "Jeśli chcesz zostać, wystarczy jedno kliknięcie."], "Tak, zachowaj moje konto"),
 }),
 "farewell": ("", {
   "en": ("There will always be a place for you", "There will always be a place for you", ["We will stop sending you our newsletter, so your inbox stays calm.", "If you ever want to come back, you are always welcome: your account stays as it is."], "Visit us any time"),
   "nl": ("Er zal altijd een plek voor je zijn", "Er zal altijd een plek voor je zijn", ["We sturen je onze nieuwsbrief niet meer, zodat je inbox rustig blijft.", "Wil je ooit terugkomen? Je bent altijd welkom: je account blijft zoals het is."], "Kom gerust langs"),
   "pl": ("Zawsze będzie tu dla Ciebie miejsce", "Zawsze będzie tu dla Ciebie miejsce", ["Przestaniemy wysyłać Ci newsletter, aby Twoja skrzynka była spokojna.", "Jeśli kiedyś zechcesz wrócić, zawsze jesteś mile widziany: Twoje konto zostaje bez zmian."], "Odwiedź nas kiedy chcesz")}),
 "otb-loyalty-benefits": ("", {
   "en": ("Your loyalty benefits are waiting", "Thank you for your first order", ["As a customer you collect points and get early access to our sales.", "Here is how to make the most of them."], "See my benefits"),
   "nl": ("Je klantvoordelen wachten op je", "Bedankt voor je eerste bestelling", ["Als klant spaar je punten en krijg je als eerste toegang tot onze acties.", "Zo haal je er het meeste uit."], "Bekijk mijn voordelen"),
   "pl": ("Twoje korzyści czekają", "Dziękujemy za pierwsze zamówienie", ["Jako klient zbierasz punkty i masz wcześniejszy dostęp do wyprzedaży.", "Zobacz, jak najlepiej z nich korzystać."], "Zobacz korzyści")}),
 "otb-small-discount": ("offer", {
   "en": ("A little something for your next order", "A little something for you", ["To thank you for your first order, here is a discount on the next one."], "Shop now"),
   "nl": ("Een kleinigheid voor je volgende bestelling", "Een kleinigheid voor jou", ["Als dank voor je eerste bestelling krijg je korting op de volgende."], "Nu shoppen"),
   "pl": ("Drobny prezent na kolejne zamówienie", "Mały prezent dla Ciebie", ["W podziękowaniu za pierwsze zamówienie mamy dla Ciebie rabat na następne."], "Kupuj teraz")}),
 "otb-discount-reminder": ("offer", {
   "en": ("Your discount is still waiting for you", "Your discount is still waiting", ["Just a reminder: your code has not been used yet."], "Use my code"),
   "nl": ("Je korting wacht nog op je", "Je korting wacht nog", ["Even ter herinnering: je code is nog niet gebruikt."], "Gebruik mijn code"),
   "pl": ("Twój rabat wciąż czeka", "Twój rabat wciąż czeka", ["Przypominamy: Twój kod nie został jeszcze wykorzystany."], "Użyj kodu")}),
 "otb-bigger-discount": ("offer", {
   "en": ("We raised it — just because we miss you", "We raised your discount", ["We would really like to see you again, so we made your discount bigger."], "Use my bigger discount"),
   "nl": ("We hebben hem verhoogd — gewoon omdat we je missen", "We hebben je korting verhoogd", ["We zien je graag terug, daarom is je korting nu groter."], "Gebruik mijn korting"),
   "pl": ("Zwiększyliśmy go — bo za Tobą tęsknimy", "Zwiększyliśmy Twój rabat", ["Bardzo chcemy Cię znów zobaczyć, więc zwiększyliśmy rabat."], "Użyj większego rabatu")}),
 "otb-last-reminder": ("offer", {
   "en": ("Last reminder: your discount expires soon", "Last reminder", ["Your code expires soon. After that, it is gone."], "Use it before it expires"),
   "nl": ("Laatste herinnering: je korting verloopt bijna", "Laatste herinnering", ["Je code verloopt binnenkort. Daarna is hij weg."], "Gebruik hem nu"),
   "pl": ("Ostatnie przypomnienie: rabat wkrótce wygaśnie", "Ostatnie przypomnienie", ["Twój kod wkrótce wygaśnie. Potem przepadnie."], "Użyj, zanim wygaśnie")}),
 "re-permission": ("repermission", {
   "en": ("Do you still want to hear from us?", "Do you still want our emails?", ["We have not heard from you in a while. We only want to write to people who like hearing from us.", "Fewer emails is an option too."], "Visit the shop"),
   "nl": ("Wil je nog steeds onze updates ontvangen?", "Wil je onze e-mails nog ontvangen?", ["We hebben al een tijd niets van je gehoord. We schrijven alleen graag aan wie dat leuk vindt.", "Minder e-mails kan ook."], "Naar de winkel"),
   "pl": ("Czy nadal chcesz otrzymywać nasze wiadomości?", "Czy nadal chcesz naszych e-maili?", ["Dawno nie mieliśmy od Ciebie wiadomości. Chcemy pisać tylko do osób, które tego chcą.", "Możesz też wybrać rzadsze wiadomości."], "Odwiedź sklep")}),
 "re-permission-goodbye": ("", {
   "en": ("We will stop emailing you", "We will stop emailing you", ["You did not answer, so we will stop sending you marketing emails.", "There will always be a place for you — you can subscribe again any time."], "Visit the shop"),
   "nl": ("We stoppen met mailen", "We stoppen met mailen", ["Je hebt niet gereageerd, dus we sturen je geen marketingmails meer.", "Er zal altijd een plek voor je zijn — je kunt je altijd opnieuw aanmelden."], "Naar de winkel"),
   "pl": ("Przestajemy do Ciebie pisać", "Przestajemy do Ciebie pisać", ["Nie dostaliśmy odpowiedzi, więc przestajemy wysyłać wiadomości marketingowe.", "Zawsze będzie tu dla Ciebie miejsce — możesz zapisać się ponownie w każdej chwili."], "Odwiedź sklep")}),
 "cart-reminder": ("products", {
   "en": ("Don't let anyone else take your items!", "You left something behind", ["Your basket is still waiting. Complete your order before your items sell out."], "Complete my order"),
   "nl": ("Laat niemand anders jouw artikelen pakken!", "Je hebt iets laten liggen", ["Je winkelwagen wacht nog op je. Rond je bestelling af voordat je artikelen uitverkocht zijn."], "Bestelling afronden"),
   "pl": ("Nie pozwól, by ktoś inny zabrał Twoje produkty!", "Coś czeka w Twoim koszyku", ["Twój koszyk wciąż czeka. Dokończ zamówienie, zanim produkty się wyprzedadzą."], "Dokończ zamówienie")}),
 "anniversary": ("offer", {
   "en": ("Happy first anniversary to us", "Happy anniversary!", ["A year ago you placed your first order with us. Thank you for choosing us — here is a small gift to celebrate."], "Celebrate with us"),
   "nl": ("Gelukkige eerste verjaardag aan ons", "Gefeliciteerd!", ["Een jaar geleden plaatste je je eerste bestelling bij ons. Bedankt dat je voor ons hebt gekozen — hier is een klein cadeau."], "Vier het met ons"),
   "pl": ("Wszystkiego najlepszego z okazji naszej pierwszej rocznicy", "Wszystkiego najlepszego!", ["Rok temu przyszło od Ciebie pierwsze zamówienie. Dziękujemy za zaufanie — oto mały prezent."], "Świętuj z nami")}),
 "welcome-back": ("offer", {
   "en": ("Welcome back!", "Welcome back!", ["It is good to see you again. Here is a little something for your next order."], "Shop again"),
   "nl": ("Welkom terug!", "Welkom terug!", ["Fijn je weer te zien. Hier is een kleinigheid voor je volgende bestelling."], "Opnieuw shoppen"),
   "pl": ("Witaj ponownie!", "Witaj ponownie!", ["Miło Cię znów widzieć. Oto drobiazg na kolejne zamówienie."], "Kupuj ponownie")}),
 "review-request": ("offer", {
   "en": ("How do you like it?", "How do you like your order?", ["Tell other customers what you think. As a thank-you for your review, here is a reward."], "Write a review"),
   "nl": ("Hoe bevalt het?", "Hoe bevalt je bestelling?", ["Vertel andere klanten wat je ervan vindt. Als dank voor je review krijg je een beloning."], "Schrijf een review"),
   "pl": ("Jak Ci się podoba?", "Jak oceniasz zamówienie?", ["Powiedz innym klientom, co myślisz. W podziękowaniu za opinię mamy dla Ciebie nagrodę."], "Napisz opinię")}),
 "loyalty-points": ("", {
   "en": ("Your points are waiting for you", "Your points are waiting", ["You have points you have not used yet. Turn them into a discount on your next order."], "Use my points"),
   "nl": ("Je punten wachten op je", "Je punten wachten op je", ["Je hebt nog ongebruikte punten. Wissel ze in voor korting op je volgende bestelling."], "Gebruik mijn punten"),
   "pl": ("Twoje punkty czekają", "Twoje punkty czekają", ["Masz niewykorzystane punkty. Zamień je na rabat przy kolejnym zamówieniu."], "Wykorzystaj punkty")}),
 "loyalty-points-reminder": ("", {
   "en": ("Don't let your points go to waste", "Don't let your points go to waste", ["A reminder: your points are still there, ready to use."], "Use my points"),
   "nl": ("Laat je punten niet verloren gaan", "Laat je punten niet verloren gaan", ["Ter herinnering: je punten staan nog klaar."], "Gebruik mijn punten"),
   "pl": ("Nie pozwól, by punkty przepadły", "Nie pozwól, by punkty przepadły", ["Przypominamy: Twoje punkty wciąż czekają."], "Wykorzystaj punkty")}),
 "assortment-updated": ("", {
   "en": ("You told us about quality. We listened.", "We listened", ["You told us the quality disappointed you. We have renewed our assortment since — come and see for yourself."], "See the new assortment"),
   "nl": ("Je vertelde ons over de kwaliteit. We hebben geluisterd.", "We hebben geluisterd", ["Je gaf aan dat de kwaliteit tegenviel. Sindsdien hebben we ons assortiment vernieuwd — kom zelf kijken."], "Bekijk het nieuwe assortiment"),
   "pl": ("Twoja opinia o jakości: posłuchaliśmy.", "Posłuchaliśmy", ["Dziękujemy za opinię o jakości. Od tego czasu odnowiliśmy asortyment — zobacz, co się zmieniło."], "Zobacz nowy asortyment")}),
}

LAYOUT = """<mjml lang="LANG">
  <mj-head>
    <mj-title>{{ shop }}</mj-title>
    {%- if preheader is defined %}
    <mj-preview>{{ preheader }}</mj-preview>
    {%- endif %}
    <mj-attributes>
      <mj-all font-family="Helvetica, Arial, sans-serif" />
      <mj-text font-size="15px" line-height="22px" color="#222222" />
    </mj-attributes>
  </mj-head>
  <mj-body background-color="#f4f4f4">
    <mj-section background-color="#ffffff" padding="24px">
      <mj-column>
        <mj-text font-size="22px" font-weight="bold">{% block heading %}{% endblock %}</mj-text>
        <mj-text>HELLO</mj-text>
        {%- block body %}{% endblock %}
        {%- if links.wallet %}<mj-button href="{{ links.wallet }}" background-color="#000000">WALLET</mj-button>{%- endif %}
      </mj-column>
    </mj-section>
    <mj-section padding="12px">
      <mj-column>
        <mj-text font-size="11px" line-height="16px" color="#777777">FOOT1<br />
          <a href="{{ links.preferences }}">FOOT2</a> · <a href="{{ links.unsubscribe }}">FOOT3</a></mj-text>
        <mj-image src="{{ links.pixel }}" width="1px" height="1px" alt="" padding="0" />
      </mj-column>
    </mj-section>
  </mj-body>
</mjml>
"""


def template(loc, flags, heading, paras, cta):
    out = ['{% extends "' + loc + '/layout.mjml" %}',
           '{% block heading %}' + heading + '{% endblock %}',
           '{% block body %}']
    for p in paras:
        out.append('        <mj-text>' + p + '</mj-text>')
    if "products" in flags:
        out.append('        {%- if products %}')
        out.append('        <mj-text>' + PRODUCTS[loc] + '<ul>{% for p in products %}<li>{{ p }}</li>{% endfor %}</ul></mj-text>')
        out.append('        {%- endif %}')
    if "offer" in flags:
        label, until, minimum = OFFER[loc]
        out.append('        {%- if offer is defined %}')
        out.append('        <mj-text align="center" font-size="18px" padding="16px" container-background-color="#fff4e0">'
                   '{{ offer.description }}<br />' + label + ': <strong>{{ offer.code }}</strong><br />'
                   '<span style="font-size:13px">' + until + ' {{ offer.expires }}'
                   '{% if offer.min_order_minor > 0 %}, ' + minimum + ' {{ offer.min_order }}{% endif %}</span></mj-text>')
        out.append('        {%- endif %}')
    if "survey" in flags:
        intro, reasons = SURVEY[loc]
        out.append('        <mj-text>' + intro + '</mj-text>')
        for key, label in reasons:
            out.append('        {%- if links.survey.' + key + ' is defined %}')
            out.append('        <mj-button href="{{ links.survey.' + key + ' }}" background-color="#eeeeee" color="#222222" padding="4px">' + label + '</mj-button>')
            out.append('        {%- endif %}')
    if "repermission" in flags:
        stay, fewer = REPERMISSION[loc]
        # "Yes" is a tracked click (the journey's `clicked` branch counts it) that opens the
        # preference centre; "fewer" goes straight to the preference centre.
        out.append('        <mj-button href="{{ links.keep }}">' + stay + '</mj-button>')
        out.append('        <mj-button href="{{ links.preferences }}" background-color="#eeeeee" color="#222222">' + fewer + '</mj-button>')
    out.append('        <mj-button href="{{ links.shop }}">' + cta + '</mj-button>')
    out.append('{% endblock %}')
    return "\n".join(out) + "\n"


def main():
    entries = []
    subjects = []
    for loc in ("en", "nl", "pl"):
        d = os.path.join(ROOT, "templates", loc)
        os.makedirs(d, exist_ok=True)
        f1, f2, f3 = FOOTER[loc]
        layout = LAYOUT.replace("LANG", loc).replace("HELLO", HELLO[loc]).replace("WALLET", WALLET[loc]).replace("FOOT1", f1).replace("FOOT2", f2).replace("FOOT3", f3)
        open(os.path.join(d, "layout.mjml"), "w").write(layout)
        entries.append(f"{loc}/layout.mjml")
        for name, (flags, texts) in T.items():
            subject, heading, paras, cta = texts[loc]
            open(os.path.join(d, name + ".mjml"), "w").write(template(loc, flags, heading, paras, cta))
            entries.append(f"{loc}/{name}.mjml")
            subjects.append((loc, name, subject))
    rs = ["//! The starter template library, embedded in the binary (generated by",
          "//! `tools/gen_library.py`; edit the table there). One MJML template per message the seeds",
          "//! describe, in English, Dutch and Polish, and a default subject for each.", "",
          "/// (`locale/name.mjml`, source).",
          "pub const TEMPLATES: &[(&str, &str)] = &["]
    for e in entries:
        rs.append(f'    ("{e}", include_str!("../templates/{e}")),')
    rs.append("];")
    rs.append("")
    rs.append("/// Default subjects by (locale, template), used when a campaign step gives none.")
    rs.append("pub const SUBJECTS: &[(&str, &str, &str)] = &[")
    for loc, name, subject in subjects:
        s = subject.replace("\\", "\\\\").replace('"', '\\"')
        rs.append(f'    ("{loc}", "{name}", "{s}"),')
    rs.append("];")
    open(os.path.join(ROOT, "src", "library.rs"), "w").write("\n".join(rs) + "\n")


main()
