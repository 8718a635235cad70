r"""Vocabulary of the toolbox knowledge base: how questions and pages become search terms.

Owns the tables that carry library staff's words to the pages' words, the lexicon of
library operations the toolbox never covers, the patterns of a request for a person, and
the analyser built on them. ``bots.knowledge`` ranks pages with it. Analysing a text:

1. lower-case, then the phrase rewrites (``_PHRASES``, for pages and questions): multi-word
   vocabulary becomes one token ("maker space" -> makerspace, "hot spot" -> hotspot) and a
   turn of phrase names its topic ("nobody shows up" -> attend low);
2. questions only: out-of-scope rewrites and words (``_OUT_OF_SCOPE_*``) turn card renewals,
   opening hours, payroll or a jammed printer into tokens such as "oosrenew" that no page
   contains;
3. tokens; a ``Lexicon`` of the pages' words glues split compounds ("work shop") and, in
   questions, repairs typos one slipped key away ("makerspce", "chromebok");
4. stop words dropped, snowball stems, and ``expand`` adds each stem's concept tokens
   (elderly, seniors, older adults -> #senior) from ``_CONCEPTS``.

Rewrite tables have one "regex => replacement" rule per line; an indented line continues
the pattern above it (write ``\s`` where a space falls at the break) and "-" as the
replacement drops the match. Concept and word tables are "name: words", indented lines
continuing the words.
"""

from __future__ import annotations

import re
from collections import Counter
from functools import lru_cache

import snowballstemmer

# --- asking for a person ------------------------------------------------------------------

_WHO = (
    r"(?:person|human|human being|people|someone|somebody|staff|staffer|staff member|"
    r"team|agent|representative|rep|librarian|operator|expert|specialist|member of (?:your )?staff)"
)
_DET = r"(?:(?:a|an|some|your|one of your|a member of your|a real|an actual|a live)\s+)?"
_PERSON_PATTERNS = [
    # "can I talk to a person", "I'd like to speak with someone from your team"
    rf"\b(?:talk|speak|chat|write)\s+(?:to|with)\s+{_DET}(?:real\s+|actual\s+|live\s+)?"
    r"(?:person|human|people|someone|somebody|operator|agent|representative|human being)\b",
    rf"\b(?:talk|speak|chat)\s+(?:to|with)\s+(?:a|some|your|one of your|a member of your)\s+"
    rf"(?:real\s+|actual\s+|live\s+)?{_WHO}s?\b",
    # "connect me with staff", "put me through to a librarian", "pass this to your team"
    rf"\b(?:connect|put|transfer|pass|hand|forward|refer|escalate|send|get)\s+"
    rf"(?:me|us|this|it|my question)\s+(?:through\s+|over\s+|on\s+)?(?:to|with|onto)\s+"
    rf"(?:the\s+)?{_DET}{_WHO}s?\b",
    # "I need a human", "I want a real person"
    r"\b(?:need|want|like|prefer|get|request|have)\s+(?:me\s+|us\s+)?"
    r"(?:to\s+(?:talk|speak)\s+(?:to|with)\s+)?"
    r"(?:a|an|some)\s+(?:real\s+|actual\s+|live\s+)?(?:human|person|human being)\b",
    r"\b(?:real|actual|live)\s+(?:person|human|people|librarian|agent|staff)\b",
    r"\b(?:someone|somebody|anyone)\s+(?:real|human)\b",
    r"\bhuman\s+(?:please|pls|help|agent|support)\b",
    r"\b(?:is|are)\s+(?:there|you)\s+(?:a\s+)?(?:human|real person)\b"
    r"(?!\s+(?:capital|rights|resources))",
    r"\b(?:not|no)\s+(?:a\s+|the\s+|more\s+)?bots?\b|\bstop\s+(?:the\s+)?bot\b",
    r"\b(?:escalate|operator|agent)\s+please\b",
    r"\b(?:help|answer|answers|support)\s+from\s+(?:a\s+|an\s+)?(?:real\s+|actual\s+|live\s+)?"
    r"(?:human|person|human being|somebody real|someone real|staff member)\b",
    r"^\s*(?:a\s+)?(?:human|person|agent|operator|someone)\s*(?:please|pls)?\s*[.!?]*\s*$",
]
PERSON_RE = [re.compile(p, re.IGNORECASE) for p in _PERSON_PATTERNS]


# --- text analysis ------------------------------------------------------------------------

# Rewrites applied in order to questions and pages before tokenising, one
# "regex => replacement" per line. They collapse multi-word library vocabulary to one token
# ("maker space", "after hours"), name what a turn of phrase is about ("where would a kiosk
# go" is about location, "nobody shows up" about attendance) and defuse stems that collide
# ("busy" and "business" both stem to "busi").
_PHRASES = r"""
\bwi[\s-]?fi\b|\bwlan\b|\bwi[\s-]fy\b|\bwify\b => wifi
\bhot[\s-]?spots?\b|\bmi[\s-]?fis?\b|\bjet[\s-]?packs?\b => hotspot
\btech\b => technology
\be[\s-]mails?\b => email
\bpcs\b => computers
\bpc\b => computer
\bbrand[\s-]new\b => new
\bnext level\b|\bbeyond (?:the )?basics?\b|\bmore advanced\b|\bafter (?:the )?basics?\b => advanced
\bnext (?:steps?|moves?)\b|\b(?:try|do|add|offer|tackle) next\b
    |\bwhat(?:s| is| comes) next\b => nextstep
\bwhere (?:(?:do|should|can|would) (?:i|we) |to )?(?:even )?(?:begin|start)\b => begin
\bi(?: am|m) (?:the |a |an )?(?:new |interim |acting )?(?:library |branch )?(?:director
    |librarian|manager|trustee|assistant|clerk)\b => -
\bhow (?:can |do |should )?(?:we|i) (?:can |could )?(?:start|begin|get started)(?= with
    \s(?:the |this )?toolbox|\s*[?.!]|$)|\bget started\b
    |\b(?:try|do|start with|tackle|focus on) first\b|\bfirst steps?\b|\bstarting point\b
    |\bnew to (?:this|all this|the toolbox|smart)\b|\bnew \w+ here\b
    |\bjust (?:started|took over)\b => begin
\bbusy\b => hectic
\bhot springs\b => hotsprings
\bwhere (?:would|should|could|do|does|to|can) ((?:\w+ ){0,4}?)(?:go|put|place|site)\b => location \1
\bbest (?:place|spot|location|site)s?\b => location
\btrain (?:stations?|depots?)\b => station
\bbenefits? (?:of|from|for)(?= (?:\w+ing\b|partner|working|collaborat)) => advantage of
\bwhat(?:s| is)? in it for (?:us|the library)\b|\bwhat do we get\b => advantage
\bmore than (?:just )?(?:a )?(?:books?|a place for books|a book warehouse)\b
    |\b(?:just|only) (?:lend |lending |for |about |a place for )?books\b
    |\bjust books\b => perception
\bat once\b|\bsimultaneous(?:ly)?\b => capacity
\bholds? lockers?\b|\bpick(?:ing)?[\s-]?up holds\b|\bpickup lockers?\b => holdslocker locker
\bhold(?:s|ing)?(?= (?:a|an|the|our|their|regular|public|community|monthly|weekly) ) => host
\bprogrammes?\b => program
\bcentres?\b => center
\blicen[cs]es?\b => license
\borganis(?=ation|e|ing) => organiz
\b(?<!cant )(?<!cannot )(?<!dont )(?:work|figure|figuring|working) out\b => assess
\b(?:\w+[\s-])?years? plan\b|\blong[\s-]range plan\b|\bstrat plan\b => strategic plan
\bwait(?:ing)?[\s-]?lists?\b => waitlist
\bwho (?:gets|can|may|is allowed|should be allowed) to (?:use|book|reserve|rent)\b => policy reserve
\b(?:help|answers?|support) from (?:a |an )?(?:real |actual )?(?:human|person|people)\b
    |\b(?:help|answers?|support) from (?:someone|somebody|staff)\b => contact
\bwho (?:made|created|wrote|writes|built|put|developed|produced|publishes|runs|is behind)\b
    |\bwho (?:is|was|are) (?:behind|the authors?)\b => author
\bwho (?:paid for|funded|funds|sponsored|financed)\b => author funding
\bonce and never\b|\bone[\s-]?(?:time|off)\b|\bnever (?:again|return|come back)\b => oneoff return
\b(?:not|arent|isnt|dont|doesnt|never|without|no) (?:on|use|using|go|going|have)? ?online\b
    |\b(?:not|arent|isnt|dont|doesnt|never|without) (?:on|use|using|have)? ?the internet\b
    |\b(?:not|arent|isnt|dont|doesnt|never|without) (?:on|use|using) (?:social(?: media)?
    |facebook)\b|\b(?:not|arent|isnt|dont|doesnt|never|without) (?:use|using|have) (?:email
    |a computer)\b => offline
\bno (?:internet|broadband|wifi) at home\b|\bwithout home internet\b => offline wifi
\blow[\s-]?income\b => lowincome
\bwin(?:ning)? (?:\w+ ){0,2}over\b => convince
\bhave (?:a|their) say\b|\bweigh in\b|\bhave (?:a )?voice\b => voice
\be[\s-]?books?\b => ebook
\be[\s-]?(?:magazines?|zines?)\b => emagazine
\be[\s-]?readers?\b => ereader
\baudio[\s-]?books?\b => audiobook
\bmakers?[\s-]?spaces?\b|\bmaker[\s-]?labs?\b|\bhacker[\s-]?spaces?\b
    |\bmaker[\s-]?carts?\b => makerspace
\bfab[\s-]?labs?\b => fablab
\b(sewing|embroidery|cnc|laser|vinyl|knitting|milling|button|heat press) (?:machines?
    |cutters?|makers?)\b => \1 makertool
\blittle free librar(?:y|ies)\b => kiosk
\blibrary of things\b => lend libraryofthings
\be[\s-]?rate\b => erate
\bchat[\s-]?gpt\b => chatgpt
\bmachine learning\b => ai
\bdesign thinking\b|\bactive learning\b => smartspace
\bcenter for technology in government\b|\buniversity at albany\b|\bualbany\b => ctg
\bhard[\s-]to[\s-]reach\b => underserved attract
\b(?:tier|level) (?:1|2|3|one|two|three|i|ii|iii)\b
    |\b(?:first|second|third|top|bottom) (?:tier|level)\b => tier
\b(?:days?|nights?) and times?\b|\bbest (?:days?|times?)\b
    |\bwhat times? (?=works?|should|is best|are best)\b => schedule
\b(?:more|other|further|follow[\s-]?up) questions\b
    |\bwho (?:can|do|should) (?:i|we) (?:call|ask|contact|email)\b => contact
\bq ?& ?a\b|\bq and a\b|\bquestion[\s-]and[\s-]answer\b|\blistening sessions?\b => forum
\b(?<!keep )(?<!keep on )(?:come|coming|came|go|get) (?:in |out )?to (?:our |the |a |any )?
    (?:events?|programs?|classes|class|workshops?|sessions?)\b
    |\b(?:no[\s-]shows?|foot traffic|(?:get|bring|draw) (?:people|them|folks|residents) (?:in
    |through the door))\b => attend
\bempty (?:seats|chairs|rooms?|classes|workshops?|events?)\b|\bhalf[\s-]empty\b => attend low
\btake stock\b|\bwhat we (?:have|lack|need)\b => assess
\b(?:dead|weak) (?:zones?|spots?)\b
    |\bkeeps? (?:dropping|cutting out|disconnecting)\b => signal speed
\bva\b|\bveterans affairs\b => veterans
\bboard (?:chair|chairman|chairwoman|president|members?)\b => board
\bhonor society\b|\beagle scouts?\b|\b4[\s-]?h\b => volunteer youth
\bcross[\s-]generational\b|\bgenerations\b => intergenerational
\b3[\s-]?d\b => 3d
\bgreen[\s-]?screens?\b|\bvideo (?:editing|production)\b|\bmusic (?:production|studio)\b => studio
\bbuy[\s-]?in\b|\bon board\b|\bsign[\s-]?off\b|\bon our side\b => buyin
\b(?:get|bring|have)\s+((?:\w+\s+){0,3}?)behind\b => get \1buyin
\bmini[\s-]?branch(?:es)?\b => minibranch
\bbook[\s-]?(?:lending[\s-]?)?(?:machines?|dispensers?)\b|\bbook[\s-]?vending\b => vending
\bsmart[\s-]?spaces?\b => smartspace
\bsmart(?= (?:street ?lights?|meters?|sensors?|cameras?|traffic|parking|poles?|grids?|bins?
    |trash|transit)) => smartcity
\bsmart[\s-]?(?:cit(?:y|ies)|communit(?:y|ies)|towns?|regions?|counties|county)\b => smartcity
\bopen[\s-]?data\b|\bdata[\s-]?sets?\b|\bpublic data\b|\bgovernment data\b => opendata
\bcase[\s-]?stud(?:y|ies)\b|\bsuccess stor(?:y|ies)\b|\breal[\s-]world example\b => casestudy
\bnetworking\b|\bnetwork with\b|\bcommunity of practice\b|\bpeer groups?\b
    |\b(?:swap|share|sharing|exchange|trade|bounce|compare) (?:ideas|notes|experiences)\b => peernet
\b((?:connect|talk|meet|network|learn|hear|find|reach|share|swap|compare|chat)\w*
    \s(?:\w+ ){0,4})other (?:small |rural |public |tiny )?(?:librar(?:y|ies|ians)
    |directors)\b => \1peerlibraries
\blibraries like (?:us|ours)\b|\b(?:facebook|online|discussion) groups?\b => peerlibraries
\btown[\s-]?halls?\b|\bcity[\s-]?halls?\b => townhall
\bcheck(?:ing)?[\s-]?out\b|\bcheckouts?\b => checkout
\bfollow[\s-]?ups?\b|\bfollowing up\b => followup
\bcom(?:e|ing) back\b|\bcome again\b|\brepeat visit(?:or)?s?\b
    |\bkeep (?:on )?(?:coming|attending|participating|showing up|returning)(?! in\b) => return
\b(?:quit|stop|stopped|stops) (?:coming|attending|showing up)\b => oneoff return
\bshow(?:ing|s)? up\b|\bturn(?:ing|s)? up\b|\bcomes? out\b => attend
\b(?:nobody|no one|noone|few people|hardly anyone) (?:comes?|came|attends?
    |signs? up)\b => attend low
\b(?:nobody|no one|noone|few people|(?:people|residents|folks|patrons) (?:dont|do not|never
    |barely)) (?:\w+ ){0,3}(?:knows?|heard|hears|aware|realize)\b
    |\bdont know (?:about )?(?:us|we|our|what we)\b => awareness publicize
\bnew (?:faces|people|participants|audiences?|users|visitors|patrons)\b => newcomers attract
\b(?:get|spread)(?:ting)? (?:the )?word out\b|\bspread(?:ing)? the word\b
    |\blet \w+ know\b => publicize
\bbook(?:ing)? (?:a |the |our |your )?(?:\w+ )?rooms?\b => reserve room
\bbookings?\b => reservation
\bolder (?:adults?|people|residents|patrons|folks|learners)\b|\bold (?:people|folks)\b => senior
\bhigh[\s-]?school(?:ers)?\b => teen student
\bservice hours\b|\bcommunity service\b => volunteer
\boutside (?:of )?(?:our |the |your )?(?:opening|open|business) hours\b|\bafter[\s-]?hours\b
    |\bafter closing\b|\bafter (?:we|they|it|the library) (?:close|closes|shut)\b
    |\bwhen (?:we|the library|its|it) (?:is |are |re )?(?:closed|shut)\b
    |\bafter (?:\d{1,2}|six|seven|eight|nine|ten) ?(?:pm|p\.m\.|oclock)?\b|\bafter dark\b
    |\bat night\b|\ball night\b|\b24[\s/-]?7\b => afterhours
\bdrive[\s-]?(?:up|in|thru|through)\b => driveup parking
\bparking (?:lot|area)s?\b => parking
\bsmall[\s-]?towns?\b => smalltown
\bgrown[\s-]?ups?\b => adults
\bsocial[\s-]?media\b => socialmedia
\bself[\s-]?employed\b|\bside (?:hustle|business)\b => selfemployed
\b(?:small )?(?:business|shop|store) owners?\b|\bsmall business(?:es)?\b => business
\bjob seekers?\b|\blooking for (?:a )?(?:job|work)\b => job
\b(?:train|training|teach|upskill(?:ing)?|skill up)(?: for)? (?:our |my |the )?(?:staff
    |employees|team|librarians)\b|\bstaff (?:training|skills|development)\b
    |\bprofessional development\b => staff skills
\bpublic computers?\b|\bpublic access computers?\b|\bpatron computers?\b => computer lab
\bcomputer basics\b|\bcomputer (?:101|literacy)\b|\bdigital literacy\b => basic computer
\bnever (?:used|touched|had) (?:a |the )?(?:computer|internet|email|smartphone|mouse)\b => beginner
\b(?:what|who) (?:is|are) (?:a |the )?(?:smart (?:city|community)|smartcity)\b
    => definition smartcity
\bmeaning of\b|\bdefine\b|\bdefinition\b|\bmean by\b|\b(?:even|really) mean\b => definition
\bwhy (?:should|would|do|does) (?:a |the |our |small )?(?:library|libraries)\b => whylibrary
\bbefore (?:we |you )?(?:partner|approach|ask|go to|talk to|meet with|reach out)\w*
    => prepartner assess
\bbring to the table\b|\bwhat (?:do|can) we (?:bring|offer|give)\b|\bin return\b
    |\bgive back\b => offer exchange
\btax (?:help|prep|preparation|forms?|returns?|season)\b => tax services
\bseat at the table\b|\bat the table\b => partner
"""
# Library operations the toolbox does not cover, recognised in questions only (a page may
# say "opening hours" in passing). Each becomes a token no page contains ("oosfacilities"),
# which counts heavily against coverage, so such questions go to a person even when a
# toolbox word ("hotspot", "makerspace", "meeting room") is in them. Multi-word rules first,
# then single words by category.
_OUT_OF_SCOPE_PHRASES = r"""
\blibrary cards?\b|\bpatron cards?\b|\b(?:lost|new|replacement|replace|expired) (?:\w+ )?cards?\b
    => ooslibrarycard
\b(?:opening|open|business|holiday|summer|winter|weekend) (?:hours|times)\b|\bhours of operation\b
    |\bwhat time\b(?! (?:should|would|is best|works))|\b(?:your|the|its|branch|library) hours\b
    |\bhours (?:for|of|at) the\b|\bschedule of the (?:library|branch)\b
    |\b(?:is|are) (?:you|it|the (?:\w+ )?(?:library|branch|makerspace|lab)|your \w+) (?:open
    |closed)\b|\b(?:closed|open) (?:today|tomorrow|on \w+day)\b|\bopen(?:ing)? late\b
    |\b(?:labor|memorial|presidents|columbus|independence|thanksgiving|christmas|easter
    |new years?|veterans) (?:day|eve|weekend)\b|\bthanksgiving\b|\bchristmas\b
    |\b(?:library|branch|we|you|it|makerspace|lab) (?:is |are |be )?(?:open|closed) (?:on|this
    |next|tomorrow|at|until|till|late)\b|\bclos(?:e|ing) (?:early|late|for (?:the |a )?(?:day
    |holiday|party|staff|weather|snow|storm|funeral))\b => oosopeninghours
\bboarding pass(?:es)?\b|\bplane tickets?\b => oosboardingpass
\bdue dates?\b|\b(?:is|are) \w+ ?\w* due\b|\bapply by\b|\bdue (?:this|next)\b
    |\bwhen (?:do|does|must|should|can|is|are) (?:i|we|you|it|the|applications?) (?:\w+ ){0,3}
    (?:submit|apply|send in|due|close)\b|\bgrant (?:extension|report|reports|reporting
    |application status|payment|reimbursement|budget revision)s?\b => oosdeadline
\bmy (?:library )?account\b|\b(?:forgot|forgotten|reset|change|lost) (?:my |the |our |a )?
    (?:\w+ )?(?:password|login|pin)\b|\bwhat(?:s| is) (?:the|our|my) (?:\w+ ){0,3}password\b
    |\blog ?in(?:to)? (?:to )?(?:koha|the catalog)\b|\b(?:cant|cannot|can not|unable to) (?:log
    |sign) ?in\b|\blogin (?:problem|issue|error)s?\b => ooscatalogaccount
\blate (?:fees?|charges?|fines?)\b|\b(?:a|the|my|late|overdue|library|pay|paying) fine\b
    |\b(?:damaged?|damages|lost|missing|stolen|ruined) (?:a |the |our )?(?:book|item|dvd|items
    |books|dvds|materials?)\b|\blost items?\b => oosoverdue
\bplace (?:a )?holds?\b|\bput (?:a|my) hold\b|\bon hold for me\b => oosplacehold
\bhow (?:many|long) (?:\w+ ){0,2}can (?:i|we|a patron|patrons|someone) (?:check ?out|borrow
    |keep)\b|\bextend (?:the |my |a )?(?:loan|due)\b|\b(?:checkout|borrowing) limit\b
    |\bis there a (?:limit|maximum|max|cap)\b
    |\bhow many \w+ can (?:one|a|each) (?:family|patron|person|household|card)\b => oosloanlimit
\binter[\s-]?library loans?\b|\bill (?:request|requests|form|status)\b|\bvia ill\b|^ill\b
    => oosinterlibrary
\bwhere(?:s| is) the (?:nearest|closest)\b|\bdirections (?:to|from)\b|\baddress of\b
    => oosdirections
\b(?:recommend|recommendations?|suggest) (?:a |some |good )?(?:books?|novels?|reads?|titles?
    |authors?|series)\b|\bbook recommendations?\b|\bgood (?:book|novel|read)\b
    |\bwhat (?:book|novel) should\b|\bdo (?:you|we) have (?:the |a )?(?:new |latest )\b
    |\b(?:in|still) stock\b|\bread[\s-]?alikes?\b => oosreadersadvisory
\bstory ?times?\b|\bsummer reading\b|\bbook (?:sale|club picks|drop)\b|\bbook donations?\b
    |\bdonate (?:some |our |my )?(?:books|dvds)\b => ooslibraryevents
\b(?:vacation|sick|personal|maternity|paternity|family) (?:days?|leave|time)\b
    |\b(?:days?|time) off\b|\bdress code\b|\bexpense reports?\b|\b(?:desk|work|weekend) shifts?\b
    |\bstaff (?:meeting|schedule|evaluation|party)s?\b => ooshrleave
\bpay ?roll\b|\bpay ?checks?\b|\bdirect deposit\b|\bw-?[24]\b|\btime ?sheets?\b
    |\b(?:our|my|staff|employee) (?:health )?(?:insurance|benefits|retirement|pension|401k)
    (?: plan)?\b => ooshrpay
\bjob (?:posting|postings|description|descriptions|ad|ads|opening|openings)\b
    |\b(?:fire|fired|firing|discipline|terminate) (?:a |an |my |our |the )?(?:\w+ )?(?:employee
    |staff|clerk|worker|volunteer|page|aide)\b|\bperformance (?:reviews?|evaluations?)\b
    |\blabor unions?\b|\bretirement plan\b|\bbackground checks?\b|\bi-?9 forms?\b
    |\bonboarding paperwork\b => ooshrhiring
\bair condition(?:ing|er)\b|\bbed ?bugs?\b|\bsnow removal\b|\bsalt(?:ing)? the (?:sidewalk
    |steps|lot)\b => oosfacilities
\bis broken\b|\b(?:wont|will not|doesnt|does not) (?:turn on|boot|power on|print|load)\b
    |\bout of (?:order|toner|paper|ink)\b|\berror (?:message|code)s?\b|\b(?:printer|copier
    |computer|laptop|scanner|machine|wifi|internet|router|screen|keyboard|phone|kiosk|locker
    |website|app)s? (?:is |are |keeps? )?(?:not working|broken|frozen|crashing)\b
    |\b(?:change|replace|refill|order|install) (?:the |a |new )?(?:toner|ink|paper|filament
    |cartridges?|bulbs?)\b|\bpaper jams?\b|\bun[\s-]?jam\w*\b|\bhow (?:do|can|should) i
    \s(?:install|configure)\b|\bdouble[\s-]sided\b|\b(?:label|receipt) (?:printer|maker)s?\b
    => oosrepair
\b(?:going to|gonna|will it|is it|supposed to) (?:rain|snow|storm|be (?:hot|cold|sunny))\w*\b
    |\bstorm coming\b|\bhow (?:hot|cold|warm) (?:will|is) it\b|\b(?:hot|cold|warm) (?:out|outside)\b
    => oosweather
\bcapital of\b|\bwho won\b|\bwhat(?:s| is) \d+ ?(?:%|percent|plus|minus|times|divided)\b
    |\bstock prices?\b => ooschitchat
\b(?:fax|print|scan|copy|photocopy|email|mail|send) (?:a |my |this |these |some )?(?:\w+ )?
    (?:for me|documents? for|boarding)\b|\bcan you (?:please )?(?:fix|repair|reset|unlock
    |renew|look up|lookup|find out|tell me if|send me|check if|check whether)\b
    |\bmy (?:home |own )?(?:wifi|internet|router|computer|laptop|phone|printer|tablet|email
    |kindle)\b(?! (?:lab|class|program))|\bat home is\b|\bmy (?:own )?(?:taxes|tax return
    |side job|job|boss|will|house|car|rent|debt|credit|bills?|insurance|paycheck|raise)\b
    => oospersonalservice
\b(?:sales|property|income) tax (?:rate|rates)\b|\btax rate\b|\bmill rate\b
    |\bwho(?:s| is| are) (?:the |our |my )?(?:current |new |state |county |city |town )?(?:mayor
    |governor|senator|representative|sheriff|superintendent|police chief|librarian|director
    |treasurer|president|chair|chairperson|clerk|manager|supervisor|boss)\b|\bpopulation of\b
    |\bzip ?code\b|\bphone number (?:of|for) (?:the |our )?(?:branch|library)\b
    |\bcirc(?:ulation)? (?:stats|statistics|numbers|reports?)\b|\b(?:monthly|annual|quarterly
    |january|february|march|april|may|june|july|august|september|october|november|december)
    \s(?:stats|statistics|reports?|budget report)\b|\bhow many (?:\w+ ){0,3}(?:did we|have we
    |were)\b => ooslocalfact
\b(?:show|screen|showing|screening|play|playing) (?:a |the )?(?:movies?|films?|dvds?)\b
    |\bpublic performance\b|\bmovie licen[cs]e\b => oosmovielicense
\b(?:food|drinks?|coffee|eating|eat) (?:in|into|inside) the (?:library|building|branch)\b
    |\b(?:bring|allow|allowed) (?:\w+ )?(?:food|drinks)\b => oosconduct
\bself[\s-]?check(?:out)?s?\b|\bprocess(?:ing)? (?:new )?(?:books|items|materials|donations)\b
    |\bweed(?:ing)? (?:the )?(?:fiction|nonfiction|dvd|cd|paperback)\b|\b(?:add|enter|register
    |delete|merge|update|look up) (?:a |the |new |this |that )?(?:patron|borrower|user)s?\b
    |\bpatron (?:record|records|account|accounts)\b|\bin the system\b => oosilsoperations
\b(?:i|we) (?:just )?(?:borrowed|checked out|checkedout|rented|lost|returned)\b
    |\b(?:return|returning) (?:a |the |my )?\w+ (?:i|we) borrowed\b => oospatron
\b(?:meeting )?minutes (?:of|from) (?:the |our |last )?(?:\w+ )?meeting\b|\bmeeting minutes\b
    => oosboardpaperwork
\bwhen(?:s| is| are| will| was| do| does) (?:the|our|my|your|it|this|that|next|applications?)\b
    (?! (?:\w+ )?(?:good|best|right|ideal|time|schedule)\b) => oosschedule
\b(?:login|log[\s-]in|password|passcode|code|link|url|key|keys|combination) (?:for|to|of)
    \s(?:our|the|my|todays|tonights|this)\b|\b(?:alarm|door) codes?\b|\bzoom links?\b
    => ooscredential
\bwho (?:runs|is running|is in charge|took over|replaces|replaced|is our|is the new)\b
    |\b(?:director|librarian|staff|employee|clerk|manager|boss) (?:just )?(?:quit|left|resigned)\b
    |\blaid off\b => oosstaffing
\bin (?:the|our) collection\b|\bbook challenges?\b|\bchallenged (?:book|title)s?\b
    |\bhow long (?:do|should) (?:we|i|you) keep\b|\bretention (?:policy|schedule)\b
    => ooscollection
\btax[\s-]deductible\b|\bpurchase orders?\b|\bcash (?:count|drawer|register)\b => oosadmin
\b(?:mask|masks|covid|vaccine|vaccination) (?:policy|rules?|mandate)\b => ooshealthpolicy
(?<!afterhours )(?<!close )(?<!closes )(?<!open )(?<!opens )\b(?:at|by|until) \d{1,2}
    \s?(?:am|pm|oclock)?\b|\b(?:tomorrow|tonight|today) at\b
    |\b(?:reserve|book|use|borrow|get) (?:a |the |our )?\w+ (?:for|on) (?:tomorrow|tonight|today
    |(?:next )?\w+day)\b|\bis (?:the |our |a )?(?:\w+ )?(?:room
    |lab|space|computer) (?:free|available|booked|taken)\b => ooswhenlocal
"""
_OUT_OF_SCOPE_WORDS = """
oosfacilities: toilet toilets bathroom bathrooms plumber plumbing leak leaks leaking leaky roof
  boiler furnace hvac mold janitor janitorial custodian pest pests bedbugs plow plowed plowing
  shovel shoveling elevator
oosilsoperations: rfid barcode barcodes koha evergreen polaris sierra marc dewey isbn ils
oosrepair: jammed unjam toner duplex reinstall reboot troubleshoot calibrate
oosweather: weather forecast sunny humid
ooschitchat: recipe recipes poem poems joke jokes lyrics horoscope football baseball basketball
  soccer showtime showtimes
oospersonalservice: notary notarize notarized passport passports
oospets: dog dogs cat cats pet pets
oosconduct: sleeping smoking drunk yelling rude unattended banned trespass trespassing
oosadmin: receipt receipts invoice invoices
oosrenew: refund refunds renew renewal renewals renewing renewed renews expire expired expires
  expiring expiration
oosoverdue: overdue owe fines
ooshrpay: payroll paycheck paychecks salary salaries wage wages timesheet timesheets overtime
ooshrleave: pto mileage reimburse reimbursed reimbursement reimbursements
oosstaffing: resigned resigns resignation
oosboardingpass: flight flights airline airlines ticket tickets
oosdeadline: deadline deadlines
ooscatalogaccount: pin pins username usernames catalog catalogs catalogue catalogues cataloging
  cataloguing opac
"""

# Library concepts, "name: words". Every word of a group also emits the group's token, so
# "elderly" reaches a page that only says "older adults" and "trustees" reaches "board".
_CONCEPTS = """
wifi: wifi wireless internet broadband signal bandwidth router connection connectivity network
  networks mbps booster extender repeater antenna erate
hotspot: hotspot hotspots mifi
afterhours: afterhours overnight nighttime closed closing shut weekend weekends 24 locked
outside: outside outdoor outdoors parking parked car cars driveup courtyard courtyards bench
  benches exterior porch lawn picnic
kiosk: kiosk kiosks vending vend locker lockers dispenser minibranch pickup automated redbox
  bookmobile
distance: far distance distant miles outlying isolated homebound travel
maker: makerspace fablab maker makers tinker tinkering 3d laser cnc studio studios prototype
  prototyping diy sewing cricut vinyl embroidery soldering electronics arduino raspberry craft
  crafts crafting crafter crafters podcast podcasting recording lego woodworking filament
  makertool glowforge makerbot prusa quilting pottery kiln
board: board boards trustee trustees governance director directors commissioner commissioners
buyin: buyin convince persuade approval approve champion advocate backing endorse justify
  skeptical skeptic skeptics doubt doubts unconvinced fad gimmick hype
senior: senior seniors elderly elder elders older aging aged retiree retirees grandparent
  grandparents grandma grandpa grandmother grandfather boomers ancianos intergenerational
youth: teen teens teenager teenagers youth young adolescent adolescents student students
  intergenerational
children: child children kid kids family families parent parents toddler toddlers
volunteer: volunteer volunteers volunteering tutor tutors mentor mentors buddy buddies helper
  helpers coach coaches
training: training train class classes course courses workshop workshops lesson lessons teach
  teaching tutorial instruction educate education session sessions curriculum
basic: basic basics beginner beginners novice intro introductory newbie fundamentals literacy
  mouse keyboard typing scam scams phishing fraud technophobe
office: word excel powerpoint office microsoft spreadsheet spreadsheets docs
emerging: advanced emerging ai artificial intelligence robot robots robotics coding code coder
  programming python scratch vr virtual drone drones augmented chatgpt gpt generative stem steam
  science engineering cybersecurity cyber deepfake deepfakes
computer: computer computers desktop desktops workstation workstations terminal terminals lab
  labs
labcare: antivirus deepfreeze reimage wipe wipes wiping updates accessibility
device: device devices laptop laptops chromebook chromebooks tablet tablets ipad ipads ereader
  kindle gadget gadgets smartphone smartphones phone phones iphone android cellphone
lend: lend lending borrow borrowing borrowed loan loans loaner checkout circulate circulating
  waitlist libraryofthings telescope telescopes kit kits
print: print printer printers printing copier copies scan scanner scanning fax photocopy toner
ebook: ebook ebooks audiobook audiobooks emagazine download downloadable libby overdrive hoopla
  kanopy streaming econtent emedia cloudlibrary flipster pressreader
filter: filter filtering filters cipa block blocking blocked
meeting: meeting meetings room rooms forum forums gathering gatherings assembly convene townhall
  discussion discussions debate dialogue conversation conversations zoom hybrid webcam
av: projector screen speakerphone webcam microphone mic speakers tv
reserve: reserve reservation rent rental request requests
government: government governments city town county municipal municipality mayor council
  officials townhall village selectboard commissioners
partner: partner partners partnership partnerships collaborate collaboration collaborator
  collaborators ally allies stakeholder stakeholders cooperate alliance committee committees
  coalition taskforce mou
market: marketing market promote promotion publicity publicize advertise advertising outreach
  flyer flyers brochure brochures poster posters newsletter communications comms pr
brand: brand branding identity reputation perception story logo rebrand tagline slogan image
  visibility visible stereotype awareness
attend: attend attendance turnout participant participants signup register registration
  attract recruit draw encourage entice invite incentive incentives prize prizes raffle crowd
loyal: loyalty loyal retain retention repeat return returning regulars regular followup
  ongoing oneoff engaged
segment: segment segments segmentation target targeted targeting audience audiences persona
  personas demographic demographics
staff: staff employee employees coworker coworkers personnel workforce crew librarian librarians
  overwhelmed
change: change resistance resistant reluctant skeptical hesitant pushback morale motivate
  enthusiasm excited enthusiastic burnout workload afraid scared intimidated
strategy: strategic strategy mission vision priority priorities prioritize focus values swot
  direction
choose: choose pick select prioritize focus
tier: tier tiers level levels stage stages foundation foundational
overview: overview summary outline checklist realistic realistically feasible doable
building: building buildings renovate renovation remodel layout floor furniture redesign facility
  facilities interior rearrange reconfigure shelving shelves stacks architect construction
  footprint multipurpose movable wheels
internal: internal internally inside capacity readiness organizational restructure processes
assess: assess assessment inventory audit gap gaps evaluate lacking missing shortfall
  prepartner lack
money: money fund funding funded budget cost costs afford financial finance dollars expense
  expensive cheap price pricey grant grants pay paying payment sponsor charge charges fee fees
timing: timing schedule scheduling evening evenings weekday weekdays saturday saturdays
  lunchtime
speed: speed slow slows slowdown crawl crawls crawling lag laggy sluggish fast faster congestion
  hectic crowded capacity spotty patchy drop drops dropping unreliable reliable reliability
underserved: underserved marginalized disadvantaged lowincome poor poverty vulnerable excluded
  minority minorities offline homeless
author: author authors creator creators produced publisher researchers ctg
begin: begin beginning nextstep
smarttech: sensor sensors streetlight streetlights camera cameras iot meter meters traffic
  surveillance
rural: rural remote countryside frontier smalltown village farm farms farmer farmers farming
  ranch
tribal: tribal tribe tribes ute native indigenous
adult: adult adults grownup grownups
data: opendata dataset datasets data statistics transparency portal portals census gis
civic: civic democracy democratic vote voting voter voters election elections candidate
  candidates townhall input voice decision decisions ballot hearing
business: business businesses entrepreneur entrepreneurs entrepreneurship startup startups
  company companies firm firms incubator accelerator coworking economic economy commerce
  chamber freelancer freelancers freelance selfemployed gig etsy sbdc score patent patents
  trademark llc pitch
job: job jobs employment career careers resume unemployed hiring
services: benefits tax taxes legal law lawyer immigration immigrant immigrants citizenship visa
  veteran veterans medicaid medicare health insurance forms paperwork welfare unemployment
  uscis irs snap disability housing dmv navigator navigators referral referrals esl
example: example examples casestudy model models showcase
peer: peernet peerlibraries peer peers cohort cohorts listserv colleague colleagues conference
  conferences association associations arsl
socialmedia: socialmedia facebook instagram twitter tiktok youtube
contact: contact phone call reach human stuck
email: email emails gmail outlook yahoo inbox
webjunction: webjunction oclc arsl smartspace placemaking
definition: definition meaning definitions
safety: safe safely safety unsafe security secure risk risks liability
whylibrary: whylibrary anchor
"""

_STOP = frozenset(
    """a about above after again against all am an and any are as at be because been before
    being below between both but by can could did do does doing down during each few for from
    further had has have having he her here hers herself him himself his how i if in into is
    it its itself just let lets me more most my myself no nor not now of off on once only or
    other our ours ourselves out over own same she should so some such than that the their
    theirs them themselves then there these they this those through to too under until up
    very was we were what when where which while who whom why will with would you your yours
    yourself yourselves also anyway get got getting go going like really want wants need im
    ive id dont doesnt cant wed weve youre thats whats theres hey hi hello please thanks thank
    ok okay might may must shall one ones thing things something anything way ways lot lots
    kind sort much many bit us folks else even still actually good best make making use using
    used sure know tell idea ideas help goes went gone put keep every handle tiny little small
    local new stuff bother tips advice try trying think thinking worth set able guess
    wondering whether pls plz u ur hows whos wheres anyone anybody someone somebody theyre
    theyve theyll youll youve shes hes isnt arent wasnt werent wont wouldnt couldnt shouldnt
    didnt havent hasnt hola gracias saludos buenos dias por favor""".split()
)
# In nearly every page: they must not let any page "cover" any question.
_GENERIC = """library libraries branch branches book books public patron patrons resident
    residents community communities people person smartcity program programs service services
    toolbox technology"""
# Everyday English that rarely carries the topic of a question. Such words weigh little in
# coverage, so "the best pizza place near the library" is about pizza, and "a small public
# computer area" is about computers.
_FILLER_WORDS = """able add allow area around ask away back bad basically become believe better
    big bring call case certain come consider continue day decide different doing done easy
    end enough everyone everything exactly fact feel find fine first follow four free full give
    great happen happy hard hear high hold home hour important include interested issue keep
    last late leave less let life long look love main man matter mean mind minimum month
    morning move near next nice number often old open part past pay place play point possible
    problem question quick quite rather reach read ready real reason right run say see seem
    sense setup share show side simple since soon spend start stay step stop take talk three
    time today together tomorrow tonight top turn two understand usual wait walk watch week
    well whole wonder work world worry year yes yet current currently fall huge buy count
    ancient old older outdated lately recently constantly always never nobody everybody wish
    sure any ask asking asked keeps kept coming came super totally kinda sorta literally pretty
    honestly seriously thoughts opinion opinions option options suggestion suggestions approach
    upset worried confused frustrated annoyed complain complaining complaint complaints know
    knows knew guys everyone anybody whatever somehow"""

_STEMMER = snowballstemmer.stemmer("english")
_TOKEN_RE = re.compile(r"[a-z0-9]+")


@lru_cache(maxsize=65536)
def stem(word: str) -> str:
    # Pure-Python snowball is the slowest step of answering; words repeat a lot.
    return str(_STEMMER.stemWord(word))


def _rewrites(table: str) -> list[tuple[re.Pattern[str], str]]:
    # An indented line continues the pattern above it; "-" as replacement drops the match.
    joined = re.sub(r"\n[ \t]+", "", table.strip())
    rules = [line.rsplit("=>", 1) for line in joined.splitlines()]
    return [(re.compile(pattern.rstrip()), out.strip()) for pattern, out in rules]


def _concept_index(table: str) -> dict[str, frozenset[str]]:
    index: dict[str, set[str]] = {}
    for group in re.split(r"\n(?=\S)", table.strip()):
        name, words = group.split(":", 1)
        for word in words.split():
            index.setdefault(stem(word), set()).add("#" + name)
    return {stem: frozenset(names) for stem, names in index.items()}


_PHRASE_RE = _rewrites(_PHRASES)
_OUT_OF_SCOPE_RE = _rewrites(_OUT_OF_SCOPE_PHRASES)
CONCEPT_OF = _concept_index(_CONCEPTS)
CONCEPT_WORDS = frozenset(w for line in _CONCEPTS.splitlines() for w in line.split(":")[-1].split())
# Question words that name an out-of-scope topic, as written ("fines", not "fine") -> token.
_OUT_OF_SCOPE_OF = {
    word: stem(name)
    for group in re.split(r"\n(?=\S)", _OUT_OF_SCOPE_WORDS.strip())
    for name, words in [group.split(":", 1)]
    for word in words.split()
}
# Every out-of-scope token ("oosfacilities"...): no page can contain one.
OUT_OF_SCOPE = frozenset(stem(t) for _, out in _OUT_OF_SCOPE_RE for t in out.split()) | frozenset(
    _OUT_OF_SCOPE_OF.values()
)
GENERIC = frozenset(stem(w) for w in _GENERIC.split())
FILLER = frozenset(stem(w) for w in _FILLER_WORDS.split())


def _normalise(text: str, query: bool) -> str:
    text = text.lower().replace("’", "'").replace("'", "")
    for pattern, replacement in _PHRASE_RE + (_OUT_OF_SCOPE_RE if query else []):
        text = pattern.sub(replacement, text)
    return text


def tokens(text: str, query: bool = False) -> list[str]:
    """Lower-cased, rewritten word tokens of ``text``, before stop words and stemming."""
    return _TOKEN_RE.findall(_normalise(text, query))


_MIN_TYPO_LEN = 6  # shorter words have too many real neighbours one edit away
_KEY_ROWS = ("qwertyuiop", "asdfghjkl", "zxcvbnm")
# Keys next to each other on a QWERTY keyboard: a slipped finger changes a letter into a
# neighbour ("compuyer"), while "sending" and "lending" are two different words.
_NEAR_KEYS = frozenset(
    (a, b)
    for r, row in enumerate(_KEY_ROWS)
    for c, a in enumerate(row)
    for r2 in (r - 1, r, r + 1)
    if 0 <= r2 < len(_KEY_ROWS)
    for c2 in (c - 1, c, c + 1)
    if 0 <= c2 < len(_KEY_ROWS[r2]) and (b := _KEY_ROWS[r2][c2]) != a
)


def _deletes(word: str) -> set[str]:
    return {word[:i] + word[i + 1 :] for i in range(len(word))}


def _typo_of(typed: str, word: str) -> bool:
    """True when ``typed`` is ``word`` with a letter dropped, doubled or added, two letters
    swapped, or one letter changed into a key next to it."""
    if typed == word or abs(len(typed) - len(word)) > 1:
        return False
    if len(typed) == len(word):
        diff = [i for i in range(len(word)) if typed[i] != word[i]]
        if len(diff) == 1:
            return (typed[diff[0]], word[diff[0]]) in _NEAR_KEYS
        i = diff[0]
        return (
            len(diff) == 2
            and diff[1] == i + 1
            and (typed[i], typed[i + 1]) == (word[i + 1], word[i])
        )
    short, long_ = sorted((typed, word), key=len)
    return any(long_[:i] + long_[i + 1 :] == short for i in range(len(long_)))


class Lexicon:
    """The words the pages and the concept table use, to repair what a hurried writer types.

    It glues split compounds ("work shop", "lap top", "3 d") when the glued form is a known
    word, and in questions replaces an unknown word by the known word one edit away
    ("makerspce", "libary", "chromebok"), preferring the word the pages use most.
    """

    def __init__(self, counts: Counter[str]) -> None:
        self._counts = counts
        self._stems = frozenset(stem(w) for w in counts) | FILLER | GENERIC
        self._by_delete: dict[str, list[str]] = {}
        for word in sorted(counts):
            if len(word) >= _MIN_TYPO_LEN - 1 and word.isalpha():
                for key in sorted({word} | _deletes(word)):
                    self._by_delete.setdefault(key, []).append(word)

    def correct(self, word: str) -> str:
        if (
            word in self._counts
            or len(word) < _MIN_TYPO_LEN
            or not word.isalpha()
            or word in _STOP
            or stem(word) in self._stems  # "scheduled" is not a typo of "schedule"
        ):
            return word
        candidates = {
            c
            for key in {word} | _deletes(word)
            for c in self._by_delete.get(key, ())
            if _typo_of(word, c) and c not in _STOP
        }
        return min(candidates, key=lambda c: (-self._counts[c], c)) if candidates else word

    def terms(self, text: str, query: bool = False) -> list[str]:
        """Stemmed content terms of ``text``, in order, without stop words."""
        words = tokens(text, query)
        out: list[str] = []
        i = 0
        while i < len(words):
            pair = words[i : i + 2]
            if len(pair) == 2 and not _STOP.issuperset(pair) and "".join(pair) in self._counts:
                out.append("".join(pair))
                i += 2
            else:
                word = words[i]
                if query and word not in _OUT_OF_SCOPE_OF:
                    word = self.correct(word)
                out.append(word)
                i += 1
        if query:
            out = [_OUT_OF_SCOPE_OF.get(t, t) for t in out]
        return [stem(t) for t in out if t not in _STOP]


def terms(text: str) -> list[str]:
    """Stemmed content terms of ``text`` without a lexicon (enough to tell empty input)."""
    return [stem(t) for t in tokens(text) if t not in _STOP]


def expand(terms: list[str]) -> list[str]:
    """The terms, each followed by the concept tokens it belongs to."""
    out: list[str] = []
    for t in terms:
        out.append(t)
        out.extend(sorted(CONCEPT_OF.get(t, ())))
    return out
