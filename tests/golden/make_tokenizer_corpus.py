"""Write tests/golden/tokenizer_corpus.json: the texts every tokenizer golden is made of.

Each group aims at one way a tokenizer goes wrong: Unicode classes (scripts, marks,
digits of other scripts), the whitespace rules (runs, newlines, trailing space), the
digit rules, byte fallback (emoji, rare chars), special-token matching (look-alikes),
merges on long inputs, and the edges (empty, one char). Run with any Python 3:

    python3 tests/golden/make_tokenizer_corpus.py
"""
import json
import pathlib

PROSE = [
    "I love programming.",
    "The quick brown fox jumps over the lazy dog.",
    "Hello world",
    " Hello world",
    "Hello World!",
    "  Hello, world!  ",
    "It's a dog's life, isn't it? We'll see; they've gone, I'm sure you'd agree.",
    "IT'S LOUD. WE'LL GO. THEY'VE SEEN. I'M HERE. YOU'D KNOW. DON'T.",
    "'s 't 're 've 'm 'll 'd 'S 'T 'RE",
    "Tokenizers turn text into numbers; models never see the letters themselves.",
    "In 1969, Apollo 11 landed on the Moon. Neil Armstrong said: \"That's one small step for [a] man.\"",
    "Once upon a time, in a land far, far away, there lived a curious little robot named Pip.",
    "She sells sea-shells by the sea-shore; the shells she sells are sea-shells, I'm sure.",
    "Mr. O'Neil's rock'n'roll band — \"The Don'ts\" — played 'til 3 a.m.",
    "e.g. i.e. etc. vs. U.S.A. Ph.D.",
    "The mitochondria is the powerhouse of the cell.",
    "What's the weather like today? Sunny, with a chance of rain later.",
    "Dear Sir or Madam,\n\nI am writing to inform you that your order #4521 has shipped.\n\nBest regards,\nAnna",
    "To be, or not to be, that is the question:\nWhether 'tis nobler in the mind to suffer",
    "CamelCaseWordsAndSnake_case_words and kebab-case-words",
    "ALL CAPS SENTENCE WITH SOME NUMBERS 42 AND SYMBOLS #@!",
    "A sentence ending with spaces   ",
    "   leading spaces then text",
    "Newline at the end\n",
    "\nNewline at the start",
]

MULTILINGUAL = [
    "Le cœur a ses raisons que la raison ne connaît point.",
    "Où est la bibliothèque ? À côté de l'église, près du café.",
    "Größe, Übermäßig, Fußgängerübergänge und Äpfel schmecken süß.",
    "¿Dónde está el baño? ¡Muchas gracias, señorita!",
    "Não há mal que sempre dure, nem bem que nunca se acabe.",
    "Nel mezzo del cammin di nostra vita mi ritrovai per una selva oscura.",
    "Zażółć gęślą jaźń. Pchnąć w tę łódź jeża lub ośm skrzyń fig.",
    "Příliš žluťoučký kůň úpěl ďábelské ódy.",
    "Pijamalı hasta yağız şoföre çabucak güvendi. İstanbul'da ılık bir gün.",
    "Tiếng Việt có nhiều dấu: ă â đ ê ô ơ ư, thanh huyền, sắc, hỏi, ngã, nặng.",
    "Съешь же ещё этих мягких французских булок, да выпей чаю.",
    "Привіт, як справи? Ґанок, їжак, є.",
    "Здравей, свят! Това е изречение на български.",
    "Ξεσκεπάζω την ψυχοφθόρα βδελυγμία. Καλημέρα κόσμε!",
    "مرحبا بالعالم! كيف حالك اليوم؟ اللغة العربية جميلة.",
    "שלום עולם! מה שלומך היום?",
    "سلام دنیا! حال شما چطور است؟",
    "नमस्ते दुनिया! आप कैसे हैं? हिन्दी एक सुंदर भाषा है।",
    "আমি বাংলায় গান গাই। তুমি কেমন আছ?",
    "வணக்கம் உலகம்! நீங்கள் எப்படி இருக்கிறீர்கள்?",
    "สวัสดีชาวโลก ภาษาไทยไม่มีการเว้นวรรคระหว่างคำ",
    "ສະບາຍດີ ໂລກ",
    "你好，世界！今天天气很好，我们去公园散步吧。",
    "中华人民共和国成立于一九四九年。",
    "繁體中文：臺灣的夜市很熱鬧。",
    "こんにちは世界！日本語の文章には、ひらがな・カタカナ・漢字が混ざります。",
    "カタカナだけのテキスト：コンピューター、プログラミング、トークナイザー",
    "안녕하세요 세계! 한국어 문장입니다. 감사합니다.",
    "გამარჯობა მსოფლიო",
    "Բարեւ աշխարհ",
    "ሰላም ልዑል! እንዴት ነህ?",
    "Habari ya dunia! Ninafurahi kukutana nawe.",
    "Sveiki, pasauli! Ąžuolas, čiuožėjas.",
    "Halló heimur! Þetta er íslenska með ð og þ.",
    "Hello世界mixed文字and English単語",
    "Ελληνικά and English and Русский in one line",
]

CODE = [
    "def fib(n):\n    if n < 2:\n        return n\n    return fib(n - 1) + fib(n - 2)\n",
    "for (int i = 0; i < n; i++) {\n\tsum += a[i] * b[i];\n}\n",
    "#include <stdio.h>\n\nint main(void) {\n    printf(\"Hello, world!\\n\");\n    return 0;\n}\n",
    "const add = (a, b) => a + b;\nconsole.log(`sum: ${add(2, 3)}`);",
    "fn main() {\n    let v: Vec<u32> = (0..10).map(|x| x * x).collect();\n    println!(\"{:?}\", v);\n}",
    "SELECT name, COUNT(*) AS n FROM users WHERE age >= 18 GROUP BY name ORDER BY n DESC;",
    "{\"name\": \"llmcli\", \"version\": \"0.1.0\", \"tags\": [\"cli\", \"llm\"], \"ok\": true, \"n\": null}",
    "<html>\n<body>\n<table><tr><td>cell</td></tr></table>\n<b>bold</b> <i>it</i> <a href=\"x\">link</a>\n</body>\n</html>",
    "<div class=\"row\"><span>text</span></div>",
    "git commit -m \"fix: handle empty input\" && git push origin main 2>&1 | tee log.txt",
    "if [ -f ~/.bashrc ]; then source ~/.bashrc; fi",
    "x = re.compile(r\"^\\s*(\\d+)\\s*$\")",
    "| Name | Value |\n|------|-------|\n| a    | 1     |\n| b    | 2     |",
    "# Heading\n\n* item one\n* item two\n\n```python\nprint('hi')\n```",
    "\\begin{equation} E = mc^2 \\quad \\int_0^\\infty e^{-x^2} dx = \\frac{\\sqrt{\\pi}}{2} \\end{equation}",
    "class Foo:\n\tdef __init__(self):\n\t\tself.x = 1\n\t\tself.y = [1, 2, 3]\n",
    "    indented with four spaces\n        and eight\n            and twelve",
    "a=1;b=2;c=a+b;d=c*2;e=d//3;f=e%2;g=f**2",
    "if (a && b || !c) { return a != b ? a : b; }",
    "obj?.prop ?? default; x ||= y; z &&= w; a ??= b",
    "path/to/some/file_name.ext C:\\Windows\\System32\\drivers\\etc\\hosts",
    "https://example.com/path?query=value&other=123#fragment",
    "user.name+tag@example.co.uk",
    "0x7fffffff 0b1010 0o755 1_000_000 3.14e-10 -42 +7",
    "<?xml version=\"1.0\" encoding=\"UTF-8\"?><root attr='1'/>",
    "@decorator\nasync def handler(request: Request) -> Response:\n    ...",
    "\r\nWindows\r\nline\r\nendings\r\n",
]

WHITESPACE = [
    " ", "  ", "   ", "    ", " " * 8, " " * 16, " " * 31, " " * 32, " " * 33, " " * 64,
    "\t", "\t\t", "\t\t\t\t", "\t" * 31, "\t" * 40,
    "\n", "\n\n", "\n\n\n", "\n" * 8, "\n" * 31, "\n" * 32, "\n" * 40,
    "\r", "\r\n", "\r\n\r\n", "\r\r\n\n",
    " \n", "\n ", " \n ", "\t\n", "\n\t", " \t \n \t ",
    "a b", "a  b", "a   b", "a    b", "a\tb", "a\t\tb", "a\nb", "a\n\nb", "a \nb", "a\n b",
    "a \n\n b", "foo  \n  bar", "x\n\n\n\ny", "end   ", "end\n\n",
    "word\u00a0word", "word\u3000word", "a\u2028b\u2029c", "a\u0085b", "a\x0b\x0cb",
    "a\u2003\u2003b", "a\u202fb", "  \u00a0  ", "a\x1c\x1db",
]

NUMBERS = [
    "0", "7", "42", "123", "1234", "12345", "123456789", "1234567890123",
    "3.14159", "1,000,000", "2024-05-01", "12:30:45", "1e-10", "-273.15", "$1,299.99",
    "+1 (555) 123-4567", "v1.2.3", "ISBN 978-3-16-148410-0", "10%", "4/5", "½ ¾ ⅓",
    "x² + y³ = z⁴", "H₂O", "Ⅻ Ⅳ ⅷ", "٠١٢٣٤٥٦٧٨٩", "०१२३४५६७८९", "１２３４５", "①②③",
    "a1b2c3", "abc123def", " 1 2 3 ", "1 2", "a  1", "a   12", "1  2", "9\n8", "007",
    "3rd 21st 2nd 4th", "π ≈ 3.14", "1.5x", "100km/h", "9" * 100,
]

EMOJI = [
    "😀", "😀😃😄", "I ❤️ NY", "👍", "👍🏽", "👍🏿👍🏻", "👨‍👩‍👧‍👦", "👩🏽‍💻", "🧑🏿‍🚀",
    "🏳️‍🌈", "🏴‍☠️", "🇫🇷🇩🇪🇯🇵", "1️⃣ 2️⃣ #️⃣", "❤", "❤️", "☕ and 🍰", "Great job! 🎉🎉🎉",
    "🦙.cpp", "🙂🙃", "👋 Hello", "Flags: 🇺🇳 🇪🇺",
]

MARKS_AND_INVISIBLES = [
    "e\u0301", "cafe\u0301", "a\u0308", "n\u0303o", "Z\u0351\u0356a\u0348\u035bl\u0353g\u0355o\u0359",
    "Việt Nam", "Vie\u0323\u0302t Nam",
    "\u1100\u1161\u11a8", "\u0915\u094d\u0937",
    "zero\u200bwidth", "zw\u200cnj", "zw\u200dj", "\ufeffbom", "soft\u00adhyphen",
    "word\u2060joiner", "left\u200eright\u200fmark", "\u2066isolate\u2069", "a\u034fb",
    "\u200b", "\u200d", "\ufeff",
]

LONG = [
    "a" * 300,
    "ab" * 200,
    "Supercalifragilisticexpialidocious" * 8,
    "Pneumonoultramicroscopicsilicovolcanoconiosis",
    "Donaudampfschifffahrtselektrizitätenhauptbetriebswerkbauunterbeamtengesellschaft",
    "x" * 64 + " " + "y" * 65,
    "!" * 300,
    "-" * 120,
    "=" * 80 + "\n" + "=" * 80,
    "aGVsbG8gd29ybGQgdGhpcyBpcyBhIGxvbmcgYmFzZTY0IHN0cmluZyB3aXRob3V0IHNwYWNlcw==" * 3,
    "deadbeefcafebabe0123456789abcdef" * 6,
    "https://example.com/" + "very-long-path-segment/" * 12,
    "中" * 100,
    "😀" * 40,
    "ab\u0301" * 80,
    "The end. " * 40,
    "lorem" + "ipsum" * 50 + " dolor",
    "йцукенгшщзхъфывапролджэячсмитьбю" * 6,
]

SPECIAL_LOOKALIKES = [
    "<|im_start|>user\nHello!<|im_end|>\n<|im_start|>assistant\n",
    "<|im_end|>", "<|im_start|>", "<|endoftext|>", "text<|endoftext|>more",
    "<|im_end", "im_end|>", "< |im_end| >", "<|IM_END|>", "<<|im_end|>>",
    "<start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\n",
    "<end_of_turn>", "<start_of_turn>", "<bos>", "<eos>", "<pad>", "<unk>", "<mask>",
    "<unused0>", "<unused99>", "<0x41>", "<0x0A>", "<s>", "</s>", "<s>text</s>",
    "<table>", "</table>", "<b>bold</b>", "<h1>Title</h1>", "[multimodal]",
    "<start_of_image>", "<end_of_image>", "<reponame>", "<repo_name>", "<filename>main.py",
    "<file_sep>", "<gh_stars>100", "<jupyter_code>print(1)", "<|endoftext|><|endoftext|>",
    "<end_of_turn><eos><bos>", ">\u2581</", "> </", "<b> </b>", "x> </y", "Ġhello", "▁hello",
    "ĊĊ newline chars", "Ã©", "<>", "<||>", "<|", "|>",
]

EDGES = [
    "", "a", "A", "z", ".", "'", "\"", "-", "_", "~", "é", "ß", "中", "あ", "한", "🙂", "\u0301",
    "\x00", "\x01", "\x04", "\x7f", "\x1b", "\x1b[31mred\x1b[0m", "\u00ad", "\U0001d400", "𝄞",
    "𠀀", "\ue000", "\U000f0000", "\ufffd", "\uffff", "∑∫√∞≠≤", "€£¥₹₿", "←↑→↓", "┌─┐│└┘",
    "⠓⠑⠇⠇⠕", "“smart” ‘quotes’", "em—dash en–dash … ellipsis", "!!!???", "...", "___", "***",
    "a'b", "a'", "'a", "''", "'''", "a.b.c", "a,b,c", "(a)", "[a]", "{a}", "#hashtag",
    "@mention", "$var", "%d", "^", "&amp;", "a/b", "\\n", "\\", "`code`",
]


def main():
    texts = PROSE + MULTILINGUAL + CODE + WHITESPACE + NUMBERS + EMOJI + MARKS_AND_INVISIBLES \
        + LONG + SPECIAL_LOOKALIKES + EDGES
    if len(set(texts)) != len(texts):
        seen = set()
        duplicates = [t for t in texts if t in seen or seen.add(t)]
        raise SystemExit(f"duplicate texts: {duplicates!r}")
    path = pathlib.Path(__file__).with_name("tokenizer_corpus.json")
    path.write_text(json.dumps({"texts": texts}, ensure_ascii=True, indent=0) + "\n")
    print(f"{len(texts)} texts -> {path}")


if __name__ == "__main__":
    main()
