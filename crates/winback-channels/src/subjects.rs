//! Subject lines for win-back mails from seed 001 ("24 onderwerpregels voor reactivatie-e-mails"),
//! in the original Dutch with English and Polish versions, ready for A/B/n variants. `{{voornaam}}`
//! became `{{ first_name }}`; a default keeps a line readable when the name is unknown. Polish
//! has gendered past tenses and nouns (`wybrałeś`/`wybrałaś`, `klientem`/`klientką`): the Polish
//! lines are written in forms that fit every reader rather than assuming a man.

/// (Dutch original, English, Polish).
pub const SEED_001: &[(&str, &str, &str)] = &[
    (
        "{{ first_name | default('Hé') }}, het is lang geleden...",
        "{{ first_name | default('Hey') }}, it has been a long time...",
        "{{ first_name | default('Hej') }}, dawno się nie widzieliśmy...",
    ),
    (
        "Een bericht voor {{ first_name | default('jou') }}",
        "A message for {{ first_name | default('you') }}",
        "Wiadomość dla {{ first_name | default('Ciebie') }}",
    ),
    (
        "{{ first_name | default('Hé') }}, we missen je!",
        "{{ first_name | default('Hey') }}, we miss you!",
        "{{ first_name | default('Hej') }}, tęsknimy za Tobą!",
    ),
    (
        "Bedankt dat je onze klant bent",
        "Thank you for being our customer",
        "Dziękujemy, że jesteś z nami",
    ),
    (
        "Gelukkige eerste verjaardag aan ons",
        "Happy first anniversary to us",
        "Wszystkiego najlepszego z okazji naszej pierwszej rocznicy",
    ),
    (
        "Het is een tijdje geleden, {{ first_name | default('vriend') }}",
        "It has been a while, {{ first_name | default('friend') }}",
        "{{ first_name | default('Hej') }}, minęło trochę czasu",
    ),
    (
        "Laten we even bijpraten...",
        "Let's catch up...",
        "Nadróbmy zaległości...",
    ),
    (
        "Bedankt dat je voor ons hebt gekozen",
        "Thank you for choosing us",
        "Dziękujemy za Twój wybór",
    ),
    (
        "Weet je zeker dat je dit achter je wilt laten?",
        "Are you sure you want to leave this behind?",
        "Czy na pewno chcesz to zostawić?",
    ),
    (
        "We willen dat je terugkomt!",
        "We want you back!",
        "Czekamy na Twój powrót!",
    ),
    (
        "Laat niemand anders jouw artikelen pakken!",
        "Don't let anyone else take your items!",
        "Nie pozwól, by ktoś inny zabrał Twoje produkty!",
    ),
    (
        "Wil je nog steeds onze updates ontvangen?",
        "Do you still want to receive our updates?",
        "Czy nadal chcesz otrzymywać nasze wiadomości?",
    ),
    (
        "Zitten we op dezelfde golflengte?",
        "Are we on the same wavelength?",
        "Czy nadajemy na tych samych falach?",
    ),
    (
        "20% korting. Gewoon omdat we je missen ❤️",
        "20% off. Just because we miss you ❤️",
        "20% rabatu. Po prostu dlatego, że tęsknimy ❤️",
    ),
    (
        "Een goede deal is altijd goed nieuws (in je inbox)",
        "A good deal is always good news (in your inbox)",
        "Dobra okazja to zawsze dobra wiadomość (w Twojej skrzynce)",
    ),
];
