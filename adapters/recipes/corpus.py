"""The demo adapters' training data, written by hand for this project (standard library only, deterministic).

A corpus of short general-knowledge questions in eight topics, each with a short answer. Most questions
come from small fact tables, each asked with several phrasings; the rest are one-off questions. Every
question remembers the fact it asks about, so `split` can keep all phrasings of a fact on the same side.

    python -m adapters.recipes.corpus      # counts per topic and split, and sample corruptions

API: TOPICS, Question, all_questions(), fact_key(), split(), spelling_pairs(); typos come from `typos`.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

from adapters.recipes.typos import cer, corrupt

TOPICS = ("sports", "science", "history", "geography", "technology", "arts", "health", "business")


@dataclass(frozen=True)
class Question:
    text: str
    answer: str
    topic: str


# ---------------------------------------------------------------------------------------------------------
# Building blocks. A table is (topic, group, templates, rows): rows are "field | field | ... " lines; a
# template is a format string over the fields ({0}, {1}, ...) whose answer is the last field, or a pair
# (format string, index of the answer field) for reversed phrasings. The fact of a row is its group and
# its first field, so all phrasings of a row (and reversed tables sharing the group) stay together.
# One-off blocks are "phrasing // other phrasing | answer" lines; each line is one fact.
# ---------------------------------------------------------------------------------------------------------

_ACRONYM_TEMPLATES = (
    "What does {0} stand for?",
    "What is the full form of {0}?",
    "Spell out what the letters {0} stand for.",
)

_TABLES: list[tuple[str, str, tuple, str]] = []
_ONE_OFFS: list[tuple[str, str]] = []


def _table(topic: str, group: str, templates: tuple, rows: str) -> None:
    _TABLES.append((topic, group, templates, rows))


def _one_offs(topic: str, lines: str) -> None:
    _ONE_OFFS.append((topic, lines))


# ================================================ geography ================================================

_table("geography", "capital", (
    "What is the capital of {0}?",
    "Which city is the capital of {0}?",
    "Name the capital city of {0}.",
    ("{1} is the capital of which country?", 0),
), """
France | Paris
Germany | Berlin
Italy | Rome
Spain | Madrid
Portugal | Lisbon
Japan | Tokyo
Egypt | Cairo
Canada | Ottawa
Australia | Canberra
Russia | Moscow
China | Beijing
India | New Delhi
Kenya | Nairobi
Argentina | Buenos Aires
Peru | Lima
Greece | Athens
Norway | Oslo
Sweden | Stockholm
Finland | Helsinki
Ireland | Dublin
Poland | Warsaw
Austria | Vienna
Hungary | Budapest
Thailand | Bangkok
South Korea | Seoul
Brazil | Brasilia
Turkey | Ankara
Denmark | Copenhagen
Belgium | Brussels
the Czech Republic | Prague
Chile | Santiago
Colombia | Bogota
Cuba | Havana
Vietnam | Hanoi
the Philippines | Manila
Iran | Tehran
Iraq | Baghdad
Saudi Arabia | Riyadh
Nigeria | Abuja
Ghana | Accra
Ethiopia | Addis Ababa
Morocco | Rabat
New Zealand | Wellington
Iceland | Reykjavik
Ukraine | Kyiv
Romania | Bucharest
Venezuela | Caracas
Pakistan | Islamabad
Nepal | Kathmandu
Uruguay | Montevideo
Ecuador | Quito
Bulgaria | Sofia
Serbia | Belgrade
Croatia | Zagreb
Estonia | Tallinn
Latvia | Riga
Lithuania | Vilnius
Jamaica | Kingston
Mongolia | Ulaanbaatar
""")

_table("geography", "us_state_capital", (
    "What is the capital of the US state of {0}?",
    "Which city is the state capital of {0}?",
), """
California | Sacramento
Texas | Austin
New York | Albany
Florida | Tallahassee
Illinois | Springfield
Pennsylvania | Harrisburg
Nevada | Carson City
Ohio | Columbus
Massachusetts | Boston
Colorado | Denver
Arizona | Phoenix
Michigan | Lansing
Oregon | Salem
Hawaii | Honolulu
Alaska | Juneau
Louisiana | Baton Rouge
Utah | Salt Lake City
Tennessee | Nashville
Minnesota | Saint Paul
Wisconsin | Madison
Kentucky | Frankfort
Vermont | Montpelier
""")

_table("geography", "river_city", (
    "Which river flows through {0}?",
    "Name the river that runs through {0}.",
    "The city of {0} lies on which river?",
), """
Paris | the Seine
London | the Thames
Rome | the Tiber
Vienna | the Danube
Budapest | the Danube
Bratislava | the Danube
Baghdad | the Tigris
Cologne | the Rhine
Basel | the Rhine
Florence | the Arno
Lisbon | the Tagus
Prague | the Vltava
Warsaw | the Vistula
New Orleans | the Mississippi
Kyiv | the Dnieper
Dublin | the Liffey
Seville | the Guadalquivir
Varanasi | the Ganges
Cairo | the Nile
Dresden | the Elbe
Hamburg | the Elbe
Bordeaux | the Garonne
Moscow | the Moskva
Saint Petersburg | the Neva
Bangkok | the Chao Phraya
""")

_table("geography", "continent", (
    "On which continent is {0}?",
    "Which continent is {0} located in?",
    "{0} is a country on which continent?",
), """
Kenya | Africa
Nigeria | Africa
Morocco | Africa
Ghana | Africa
Madagascar | Africa
Ethiopia | Africa
Brazil | South America
Peru | South America
Chile | South America
Argentina | South America
Colombia | South America
Bolivia | South America
Paraguay | South America
Nepal | Asia
Mongolia | Asia
Vietnam | Asia
Thailand | Asia
Bangladesh | Asia
Laos | Asia
Portugal | Europe
Norway | Europe
Poland | Europe
Ireland | Europe
Hungary | Europe
Canada | North America
Mexico | North America
""")

_table("geography", "city_country", (
    "In which country is the city of {0}?",
    "{0} is a city in which country?",
    "Which country is home to the city of {0}?",
), """
Timbuktu | Mali
Marrakesh | Morocco
Casablanca | Morocco
Kyoto | Japan
Osaka | Japan
Barcelona | Spain
Munich | Germany
Venice | Italy
Naples | Italy
Istanbul | Turkey
Mumbai | India
Chennai | India
Sydney | Australia
Melbourne | Australia
Toronto | Canada
Montreal | Canada
Quebec City | Canada
Rio de Janeiro | Brazil
Krakow | Poland
Geneva | Switzerland
Porto | Portugal
Salzburg | Austria
Shanghai | China
Cape Town | South Africa
Johannesburg | South Africa
Auckland | New Zealand
Marseille | France
Antwerp | Belgium
Rotterdam | the Netherlands
Gothenburg | Sweden
Bergen | Norway
Chicago | the United States
Dubai | the United Arab Emirates
Medellin | Colombia
Valparaiso | Chile
Busan | South Korea
Ho Chi Minh City | Vietnam
Lagos | Nigeria
Mombasa | Kenya
""")

_table("geography", "landmark_city", (
    "In which city is {0} located?",
    "Which city is home to {0}?",
    "Where would you travel to see {0}?",
), """
the Eiffel Tower | Paris
Big Ben | London
the Shard | London
the Statue of Liberty | New York City
the Empire State Building | New York City
the Golden Gate Bridge | San Francisco
the Hollywood Sign | Los Angeles
the Burj Khalifa | Dubai
the Petronas Towers | Kuala Lumpur
the CN Tower | Toronto
the Space Needle | Seattle
the Gateway Arch | St. Louis
the Brandenburg Gate | Berlin
the Christ the Redeemer statue | Rio de Janeiro
the Taj Mahal | Agra
the Kremlin | Moscow
the Blue Mosque | Istanbul
Table Mountain | Cape Town
the Little Mermaid statue | Copenhagen
the Atomium | Brussels
""")

_one_offs("geography", """
What is the largest ocean on Earth? // Which ocean is the biggest in the world? | the Pacific Ocean
What is the highest mountain in the world? // Which mountain has the highest summit above sea level? | Mount Everest
What is the longest river in Europe? // Which river is the longest in Europe? | the Volga
What is the longest river in South America? | the Amazon
What is the longest river in Africa? | the Nile
What is the longest river in Asia? // Which river is the longest in China? | the Yangtze
What is the longest river in the United Kingdom? | the Severn
What is the longest river in France? | the Loire
Which river carved out the Grand Canyon? | the Colorado River
Which river forms much of the border between the USA and Mexico? | the Rio Grande
What is the largest hot desert in the world? | the Sahara
On which continent is the Sahara Desert? | Africa
Which desert covers much of Mongolia and northern China? | the Gobi Desert
Which desert in Chile is one of the driest places on Earth? | the Atacama Desert
Which country is the largest in the world by area? // What is the world's biggest country by land area? | Russia
What is the smallest country in the world? // Which is the world's smallest independent state? | Vatican City
What is the largest continent by area? | Asia
What is the coldest continent on Earth? | Antarctica
What is the largest island in the world? | Greenland
Which ocean trench is the deepest on Earth? | the Mariana Trench
What is the highest uninterrupted waterfall in the world? | Angel Falls
Which waterfalls lie on the border of Canada and the United States? | Niagara Falls
Which waterfall lies on the border of Zambia and Zimbabwe? | Victoria Falls
What is the deepest lake in the world? | Lake Baikal
Which is the largest of the Great Lakes? | Lake Superior
What is the highest mountain in Africa? | Mount Kilimanjaro
What is the highest mountain in South America? | Aconcagua
What is the highest mountain in North America? | Denali
What is the highest mountain in Japan? | Mount Fuji
What is the highest mountain in the Alps? | Mont Blanc
In which mountain range is Mount Everest? | the Himalayas
In which mountain range is the Matterhorn? | the Alps
K2 lies in which mountain range? | the Karakoram
Which mountain range is seen as the boundary between Europe and Asia? | the Ural Mountains
Which mountains form the border between France and Spain? | the Pyrenees
Which long mountain range runs down the west of South America? | the Andes
Which strait separates Spain from Morocco? | the Strait of Gibraltar
Which strait separates Asia from North America? | the Bering Strait
Which stretch of water separates England from France? | the English Channel
Which canal links the Mediterranean Sea and the Red Sea? | the Suez Canal
Which canal connects the Atlantic and Pacific Oceans? | the Panama Canal
Which European country is shaped like a boot? | Italy
Which ocean lies between Africa and Australia? | the Indian Ocean
Which ocean lies between Europe and North America? | the Atlantic Ocean
Which ocean surrounds the North Pole? | the Arctic Ocean
Which sea lies between southern Europe and North Africa? | the Mediterranean Sea
Which imaginary line divides the Earth into northern and southern hemispheres? | the equator
What is the line of zero degrees longitude called? // Which line of longitude passes through Greenwich in London? | the Prime Meridian
Which US state is made up entirely of islands in the Pacific? | Hawaii
What is the largest US state by area? | Alaska
Which salty lake is so dense that people float easily in it? | the Dead Sea
Which two countries share the longest international border? | Canada and the USA
What is the largest country in South America? | Brazil
What is the largest country in Africa by area? | Algeria
Which African country has the largest population? | Nigeria
What is the huge sandstone rock in central Australia called? | Uluru
What is the world's largest coral reef system called? | the Great Barrier Reef
What is the largest tropical rainforest in the world? | the Amazon rainforest
Which two countries make up most of the Iberian Peninsula? | Spain and Portugal
""")

# ================================================= science =================================================

_table("science", "element_symbol", (
    "What is the chemical symbol for {0}?",
    "Which symbol stands for {0} on the periodic table?",
    ("Which element has the chemical symbol {1}?", 0),
), """
gold | Au
silver | Ag
iron | Fe
sodium | Na
potassium | K
lead | Pb
copper | Cu
mercury | Hg
tin | Sn
oxygen | O
hydrogen | H
carbon | C
nitrogen | N
helium | He
neon | Ne
calcium | Ca
chlorine | Cl
zinc | Zn
sulfur | S
phosphorus | P
magnesium | Mg
uranium | U
tungsten | W
platinum | Pt
nickel | Ni
fluorine | F
iodine | I
silicon | Si
lithium | Li
argon | Ar
""")

_table("science", "atomic_number", (
    "What is the atomic number of {0}?",
    "How many protons are in an atom of {0}?",
    ("Which element has the atomic number {1}?", 0),
), """
hydrogen | 1
helium | 2
lithium | 3
carbon | 6
nitrogen | 7
oxygen | 8
neon | 10
sodium | 11
magnesium | 12
chlorine | 17
calcium | 20
iron | 26
copper | 29
silver | 47
gold | 79
uranium | 92
""")

_table("science", "planet_order", (
    "Which planet is {0} from the Sun?",
    "Counting outward from the Sun, which planet comes {0}?",
), """
first | Mercury
second | Venus
third | Earth
fourth | Mars
fifth | Jupiter
sixth | Saturn
seventh | Uranus
eighth | Neptune
""")

_table("science", "si_unit", (
    "What is the SI unit of {0}?",
    "Name the SI unit used to measure {0}.",
    "In SI units, what is {0} measured in?",
), """
force | the newton
energy | the joule
power | the watt
electric current | the ampere
electrical resistance | the ohm
electric potential difference | the volt
frequency | the hertz
pressure | the pascal
thermodynamic temperature | the kelvin
mass | the kilogram
time | the second
electric charge | the coulomb
capacitance | the farad
luminous intensity | the candela
amount of substance | the mole
magnetic flux | the weber
magnetic flux density | the tesla
inductance | the henry
radioactive activity | the becquerel
""")

_table("science", "formula", (
    "What is the chemical formula for {0}?",
    "Which chemical formula represents {0}?",
    ("Which substance has the chemical formula {1}?", 0),
), """
water | H2O
sodium chloride | NaCl
carbon dioxide | CO2
carbon monoxide | CO
methane | CH4
ammonia | NH3
ozone | O3
glucose | C6H12O6
sulfuric acid | H2SO4
hydrochloric acid | HCl
nitric acid | HNO3
hydrogen peroxide | H2O2
calcium carbonate | CaCO3
sodium hydroxide | NaOH
""")

_table("science", "animal_class", (
    "What type of animal is the {0}?",
    "The {0} is classified as which kind of animal?",
    "Scientifically, which group of animals does the {0} belong to?",
), """
whale | mammal
dolphin | mammal
bat | mammal
platypus | mammal
kangaroo | mammal
frog | amphibian
salamander | amphibian
newt | amphibian
shark | fish
seahorse | fish
penguin | bird
ostrich | bird
snake | reptile
crocodile | reptile
tortoise | reptile
spider | arachnid
scorpion | arachnid
butterfly | insect
ant | insect
crab | crustacean
lobster | crustacean
octopus | mollusk
snail | mollusk
""")

_table("science", "study_of", (
    "What is the scientific study of {0} called?",
    "Which branch of science studies {0}?",
    "Name the science that deals with {0}.",
), """
fossils | paleontology
weather and the atmosphere | meteorology
earthquakes | seismology
plants | botany
animals | zoology
fungi | mycology
insects | entomology
stars, planets and galaxies | astronomy
rocks and the structure of the Earth | geology
living things | biology
genes and heredity | genetics
birds | ornithology
the oceans | oceanography
cells | cytology
fish | ichthyology
the origin and structure of the universe | cosmology
microorganisms such as bacteria | microbiology
volcanoes | volcanology
reptiles and amphibians | herpetology
the chemistry of living things | biochemistry
how organisms interact with their environment | ecology
""")

_one_offs("science", """
Which planet is known as the Red Planet? | Mars
What is the largest planet in our solar system? // Which planet is the biggest in the solar system? | Jupiter
What is the smallest planet in our solar system? | Mercury
Which planet has the hottest surface in the solar system? | Venus
Which planet is famous for its wide, bright rings? | Saturn
Which planet has a giant storm called the Great Red Spot? | Jupiter
On which planet is the giant volcano Olympus Mons? | Mars
What is the largest moon of Saturn? | Titan
What is the largest moon in the solar system? | Ganymede
Which planet spins on its side with an extreme axial tilt? | Uranus
Phobos and Deimos are moons of which planet? | Mars
Io and Europa are moons of which planet? | Jupiter
What is the name of the galaxy that contains our solar system? | the Milky Way
What is the closest star to Earth? | the Sun
What is the closest star to the Sun? | Proxima Centauri
Roughly how long does sunlight take to reach Earth? | about 8 minutes
How many planets are in our solar system? | 8
Which body was reclassified as a dwarf planet in 2006? | Pluto
Which force keeps the planets in orbit around the Sun? | gravity
Which gas makes up most of the Sun? | hydrogen
Who developed the theory of general relativity? // Which physicist proposed the general theory of relativity? | Albert Einstein
Who formulated the three laws of motion? | Isaac Newton
Who is credited with creating the periodic table of elements? | Dmitri Mendeleev
Which naturalist wrote On the Origin of Species in 1859? | Charles Darwin
Which scientist won Nobel Prizes in both physics and chemistry? | Marie Curie
Who discovered the electron in 1897? | J. J. Thomson
Who proposed the uncertainty principle in quantum mechanics? | Werner Heisenberg
Which Greek thinker shouted "Eureka" after discovering a principle of buoyancy? | Archimedes
Who discovered the neutron in 1932? | James Chadwick
Who discovered the atomic nucleus with his gold foil experiment? | Ernest Rutherford
Who described the three laws of planetary motion? | Johannes Kepler
Who is known as the father of genetics? // Which scientist studied inheritance using pea plants? | Gregor Mendel
Who proposed the theory of continental drift? | Alfred Wegener
Who discovered X-rays in 1895? | Wilhelm Roentgen
Who proposed that the Earth moves around the Sun, in 1543? | Nicolaus Copernicus
Who flew a kite in a storm to show that lightning is electricity? | Benjamin Franklin
Approximately how fast does light travel in a vacuum? | about 300,000 km/s
At what temperature in Celsius does water boil at sea level? | 100 degrees Celsius
At what temperature in Celsius does pure water freeze? | 0 degrees Celsius
What is the boiling point of water in degrees Fahrenheit? | 212 degrees Fahrenheit
What is absolute zero in degrees Celsius? | -273.15 degrees Celsius
What is the pH of pure water? | 7
Which scale measures how acidic or alkaline a solution is? | the pH scale
Which gas makes up most of Earth's atmosphere? | nitrogen
What is the hardest natural substance on Earth? | diamond
What is the center of an atom called? | the nucleus
Which subatomic particle carries a negative charge? | the electron
Which subatomic particle has no electric charge? | the neutron
Which subatomic particle carries a positive charge? | the proton
What is the lightest chemical element? | hydrogen
Which metal is liquid at room temperature? | mercury
Which gas do plants take in from the air for photosynthesis? | carbon dioxide
What process do plants use to make food from sunlight? | photosynthesis
Which green pigment lets plants absorb light? | chlorophyll
Which part of the cell is called its powerhouse? | the mitochondria
In which part of a plant cell does photosynthesis happen? | the chloroplast
What does DNA stand for? | deoxyribonucleic acid
What does RNA stand for? | ribonucleic acid
What does a Geiger counter detect? | radiation
What type of energy does a moving object have? | kinetic energy
What do we call a substance that speeds up a reaction without being used up? | a catalyst
Rusting of iron is an example of which type of chemical reaction? | oxidation
Which instrument measures atmospheric pressure? | a barometer
Which force opposes motion between two surfaces in contact? | friction
What is the change from a gas to a liquid called? | condensation
What is the change from a solid directly into a gas called? | sublimation
Which color of visible light has the longest wavelength? | red
What do we call animals that eat only plants? | herbivores
What do we call animals that eat both plants and meat? | omnivores
What is the largest animal ever known to have lived? | the blue whale
How many legs does an insect have? | 6
How many legs does a spider have? | 8
What is the fastest land animal? | the cheetah
""")

# ================================================= history =================================================

_table("history", "event_did", (
    "In which year did {0}?",
    "When did {0}?",
    "What year did {0}?",
), """
the Berlin Wall fall | 1989
World War II end | 1945
World War I begin | 1914
World War I end | 1918
World War II begin | 1939
the Titanic sink | 1912
Christopher Columbus first reach the Americas | 1492
the French Revolution begin | 1789
humans first land on the Moon | 1969
the American Civil War begin | 1861
the American Civil War end | 1865
the Great Fire of London break out | 1666
the Russian Revolution take place | 1917
the Wall Street Crash happen | 1929
Napoleon Bonaparte die | 1821
Queen Victoria die | 1901
the Western Roman Empire fall | 476
the Chernobyl nuclear disaster happen | 1986
India gain independence from Britain | 1947
the United States enter World War II | 1941
the Spanish Armada sail against England | 1588
East and West Germany reunify | 1990
Adolf Hitler become chancellor of Germany | 1933
Constantinople fall to the Ottoman Turks | 1453
the Cuban Missile Crisis take place | 1962
the Boston Tea Party take place | 1773
Martin Luther publish his Ninety-five Theses | 1517
Yuri Gagarin become the first person in space | 1961
the Korean War begin | 1950
the Wright brothers make their first powered flight | 1903
the Soviet Union collapse | 1991
the Battle of Hastings take place | 1066
the Battle of Waterloo take place | 1815
the D-Day landings in Normandy take place | 1944
the Black Death reach Europe | 1347
the American Revolutionary War end | 1783
Alexander the Great die | 323 BC
the Vietnam War end | 1975
Elizabeth I become queen of England | 1558
Nelson Mandela become president of South Africa | 1994
the Suez Crisis take place | 1956
the Berlin Airlift begin | 1948
the Iranian Revolution take place | 1979
the English Civil War begin | 1642
the Glorious Revolution take place in England | 1688
the Louisiana Purchase take place | 1803
the Meiji Restoration begin in Japan | 1868
the Mexican Revolution begin | 1910
the Easter Rising take place in Dublin | 1916
the Spanish Civil War begin | 1936
Winston Churchill die | 1965
Joseph Stalin die | 1953
""")

_table("history", "event_was", (
    "In which year was {0}?",
    "When was {0}?",
    "What year was {0}?",
), """
the American Declaration of Independence signed | 1776
the Magna Carta sealed | 1215
the Berlin Wall built | 1961
the United Nations founded | 1945
Abraham Lincoln assassinated | 1865
John F. Kennedy assassinated | 1963
Julius Caesar assassinated | 44 BC
Nelson Mandela released from prison | 1990
NATO founded | 1949
the atomic bomb dropped on Hiroshima | 1945
Martin Luther King Jr. assassinated | 1968
the Suez Canal opened | 1869
the Eiffel Tower completed | 1889
Queen Elizabeth II crowned | 1953
the Treaty of Versailles signed | 1919
the People's Republic of China proclaimed | 1949
slavery abolished in the United States | 1865
King Charles I of England executed | 1649
Mahatma Gandhi assassinated | 1948
the Panama Canal opened | 1914
the Statue of Liberty dedicated | 1886
the Warsaw Pact formed | 1955
Sputnik 1 launched into orbit | 1957
the Rosetta Stone discovered | 1799
""")

_table("history", "historical_role", (
    "Who was the {0}?",
    "Name the {0}.",
    "Which historical figure was the {0}?",
), """
first President of the United States | George Washington
first Roman emperor | Augustus
first emperor of a unified China | Qin Shi Huang
first female Prime Minister of the United Kingdom | Margaret Thatcher
first Prime Minister of independent India | Jawaharlal Nehru
first person to walk on the Moon | Neil Armstrong
first woman to travel into space | Valentina Tereshkova
first person to reach the South Pole | Roald Amundsen
first Chancellor of the German Empire | Otto von Bismarck
US president during the American Civil War | Abraham Lincoln
British Prime Minister for most of World War II | Winston Churchill
leader of the Soviet Union during World War II | Joseph Stalin
first US president to resign from office | Richard Nixon
last active ruler of Ptolemaic Egypt | Cleopatra
US president during the Cuban Missile Crisis | John F. Kennedy
British king during World War II | George VI
first black President of South Africa | Nelson Mandela
first European to reach India by sea | Vasco da Gama
first Emperor of the French | Napoleon Bonaparte
US president who launched the New Deal | Franklin D. Roosevelt
last Tsar of Russia | Nicholas II
longest-reigning monarch in British history | Elizabeth II
first President of the French Fifth Republic | Charles de Gaulle
first Secretary-General of the United Nations | Trygve Lie
first US president to live in the White House | John Adams
first Tudor king of England | Henry VII
first Roman emperor to convert to Christianity | Constantine the Great
Frankish king crowned emperor by the Pope in 800 | Charlemagne
leader of Nazi Germany during World War II | Adolf Hitler
fascist dictator of Italy during World War II | Benito Mussolini
emperor of Japan during World War II | Hirohito
founder of the Republic of Turkey | Mustafa Kemal Ataturk
founding leader of the People's Republic of China | Mao Zedong
US president who made the Louisiana Purchase | Thomas Jefferson
supreme Allied commander on D-Day | Dwight D. Eisenhower
Viking explorer who reached North America around 1000 | Leif Erikson
explorer who charted Australia's east coast in 1770 | James Cook
Venetian merchant who visited Kublai Khan's court | Marco Polo
first woman to fly solo across the Atlantic | Amelia Earhart
""")

_table("history", "battle_war", (
    "In which war was the {0} fought?",
    "The {0} was part of which war?",
    "Which war included the {0}?",
), """
Battle of Gettysburg | the American Civil War
Battle of Antietam | the American Civil War
Battle of the Somme | World War I
Battle of Verdun | World War I
Gallipoli campaign | World War I
Battle of Stalingrad | World War II
Battle of Midway | World War II
Battle of Britain | World War II
Battle of El Alamein | World War II
Battle of the Bulge | World War II
Battle of Okinawa | World War II
Battle of Trafalgar | the Napoleonic Wars
Battle of Austerlitz | the Napoleonic Wars
Battle of Leipzig | the Napoleonic Wars
Battle of Agincourt | the Hundred Years' War
Battle of Yorktown | the American Revolutionary War
Battle of Bunker Hill | the American Revolutionary War
Battle of Saratoga | the American Revolutionary War
Battle of Thermopylae | the Greco-Persian Wars
Battle of Marathon | the Greco-Persian Wars
Battle of Inchon | the Korean War
Tet Offensive | the Vietnam War
""")

_one_offs("history", """
Which ship carried the Pilgrims to America in 1620? | the Mayflower
Which Roman city was buried by Mount Vesuvius in AD 79? | Pompeii
Which empire built the mountain city of Machu Picchu? | the Inca Empire
Which civilization built the pyramids of Giza? | the ancient Egyptians
Which civilization built the city of Chichen Itza? | the Maya
Who founded the Mongol Empire? | Genghis Khan
What was the capital of the Byzantine Empire? | Constantinople
What was the capital of the Aztec Empire? | Tenochtitlan
What was the capital of the Inca Empire? | Cusco
Which empire was ruled by tsars until 1917? | the Russian Empire
Which dynasty built most of the Great Wall seen today? | the Ming dynasty
Which country gave the Statue of Liberty to the United States? | France
Which president delivered the Gettysburg Address? | Abraham Lincoln
Which US president issued the Emancipation Proclamation? | Abraham Lincoln
Which Carthaginian general crossed the Alps with war elephants? | Hannibal
Which king of Macedon conquered the Persian Empire? | Alexander the Great
Whose tomb did Howard Carter discover in 1922? // Which pharaoh's tomb was found by Howard Carter? | Tutankhamun
Who led India's nonviolent struggle for independence? | Mahatma Gandhi
Who gave the famous "I Have a Dream" speech in 1963? | Martin Luther King Jr.
Which English queen reigned when the Spanish Armada was defeated? | Elizabeth I
Which French emperor was defeated at the Battle of Waterloo? | Napoleon Bonaparte
Which city was divided by a wall from 1961 to 1989? | Berlin
Which country did Napoleon invade in 1812? | Russia
Which two superpowers were the main rivals in the Cold War? | the US and USSR
Which war between England and France lasted from 1337 to 1453? | the Hundred Years' War
What name is given to Europe's cultural rebirth after the Middle Ages? | the Renaissance
Which ancient wonder stood at the harbor of Alexandria? | the Lighthouse of Alexandria
Which of the Seven Wonders of the Ancient World still stands? | the Great Pyramid
Whose expedition was the first to sail around the world? | Ferdinand Magellan
Which revolution began with the storming of the Bastille? | the French Revolution
Which charter did King John seal at Runnymede? | the Magna Carta
Which Roman general crossed the Rubicon in 49 BC? | Julius Caesar
Which ancient Greek city-state was famous for its warrior culture? | Sparta
In which city was the American Declaration of Independence signed? | Philadelphia
Which war was fought between the Union and the Confederacy? | the American Civil War
What was the name of the secret police of Nazi Germany? | the Gestapo
Which empire ruled from Constantinople after 1453? | the Ottoman Empire
In which country did the Industrial Revolution begin? | Great Britain
Whose assassination in Sarajevo in 1914 triggered World War I? | Archduke Franz Ferdinand
Who refused to give up her bus seat in Montgomery in 1955? | Rosa Parks
Which general led the Confederate Army of Northern Virginia? | Robert E. Lee
Which English king had six wives? | Henry VIII
Which French queen was executed during the French Revolution? | Marie Antoinette
Which ancient empire had its ceremonial capital at Persepolis? | the Persian Empire
Which Soviet leader introduced the policies of glasnost and perestroika? | Mikhail Gorbachev
Which wall did the Romans build across northern England? | Hadrian's Wall
What name is given to the worldwide economic slump of the 1930s? | the Great Depression
Which treaty formally ended World War I with Germany? | the Treaty of Versailles
""")

# ================================================ technology ================================================

_table("technology", "tech_founder", (
    "Which technology company did {0} help found?",
    "{0} is a founder of which tech company?",
    "Name the company that {0} helped to start.",
), """
Bill Gates | Microsoft
Paul Allen | Microsoft
Steve Jobs | Apple
Steve Wozniak | Apple
Mark Zuckerberg | Facebook
Larry Page | Google
Sergey Brin | Google
Jensen Huang | Nvidia
Michael Dell | Dell
Larry Ellison | Oracle
Reed Hastings | Netflix
Gordon Moore | Intel
Robert Noyce | Intel
Jan Koum | WhatsApp
Kevin Systrom | Instagram
Chad Hurley | YouTube
Bill Hewlett | Hewlett-Packard
David Packard | Hewlett-Packard
Evan Spiegel | Snapchat
Drew Houston | Dropbox
Travis Kalanick | Uber
Brian Chesky | Airbnb
Sam Altman | OpenAI
""")

_table("technology", "tech_product", (
    "Which company makes {0}?",
    "Which company is behind {0}?",
    "Name the company that makes {0}.",
), """
the iPhone | Apple
the iPad | Apple
the Macintosh computer | Apple
AirPods | Apple
the iOS operating system | Apple
the Siri voice assistant | Apple
the Windows operating system | Microsoft
the Xbox games console | Microsoft
the Surface tablets | Microsoft
the Bing search engine | Microsoft
the Android operating system | Google
the Chrome web browser | Google
the Pixel phones | Google
the Gmail email service | Google
the PlayStation console | Sony
the Walkman portable music player | Sony
the Kindle e-reader | Amazon
the Alexa voice assistant | Amazon
Photoshop image editing software | Adobe
Lightroom photo software | Adobe
GeForce graphics cards | Nvidia
Pentium processors | Intel
Ryzen processors | AMD
Snapdragon mobile processors | Qualcomm
the Firefox web browser | Mozilla
the Game Boy handheld console | Nintendo
the Wii games console | Nintendo
Galaxy smartphones | Samsung
the ChatGPT chatbot | OpenAI
""")

_table("technology", "tech_acronym", _ACRONYM_TEMPLATES, """
CPU | central processing unit
GPU | graphics processing unit
RAM | random-access memory
ROM | read-only memory
HTML | HyperText Markup Language
HTTP | Hypertext Transfer Protocol
URL | Uniform Resource Locator
USB | Universal Serial Bus
PDF | Portable Document Format
LAN | local area network
WWW | World Wide Web
AI | artificial intelligence
SSD | solid-state drive
GPS | Global Positioning System
LED | light-emitting diode
LCD | liquid-crystal display
CSS | Cascading Style Sheets
SQL | Structured Query Language
VPN | virtual private network
DNS | Domain Name System
API | application programming interface
BIOS | Basic Input/Output System
HDMI | High-Definition Multimedia Interface
IoT | Internet of Things
SMS | Short Message Service
FTP | File Transfer Protocol
ISP | internet service provider
""")

_table("technology", "inventor", (
    "Who invented {0}?",
    "Which inventor is credited with {0}?",
    "{0} was invented by whom?",
), """
the telephone | Alexander Graham Bell
the World Wide Web | Tim Berners-Lee
the phonograph | Thomas Edison
the printing press with movable metal type | Johannes Gutenberg
the computer mouse | Douglas Engelbart
the Analytical Engine | Charles Babbage
the ballpoint pen | Laszlo Biro
the safety elevator | Elisha Otis
Morse code | Samuel Morse
the AC induction motor | Nikola Tesla
the cotton gin | Eli Whitney
the explosive dynamite | Alfred Nobel
the spinning jenny | James Hargreaves
the hovercraft | Christopher Cockerell
the Polaroid instant camera | Edwin Land
""")

_table("technology", "language_creator", (
    "Who created the {0} programming language?",
    "Which programmer designed the {0} language?",
    "The {0} programming language was created by whom?",
), """
Python | Guido van Rossum
Java | James Gosling
C | Dennis Ritchie
C++ | Bjarne Stroustrup
JavaScript | Brendan Eich
Ruby | Yukihiro Matsumoto
Perl | Larry Wall
PHP | Rasmus Lerdorf
Swift | Chris Lattner
Pascal | Niklaus Wirth
Lisp | John McCarthy
Scala | Martin Odersky
Rust | Graydon Hoare
""")

_table("technology", "tech_company_country", (
    "In which country was the tech company {0} founded?",
    "{0} is a technology company from which country?",
), """
Samsung | South Korea
LG Electronics | South Korea
Sony | Japan
Nintendo | Japan
Toshiba | Japan
Nokia | Finland
Ericsson | Sweden
Spotify | Sweden
Huawei | China
Lenovo | China
Xiaomi | China
SAP | Germany
ASML | the Netherlands
Arm Holdings | the United Kingdom
BlackBerry | Canada
""")

_table("technology", "tech_year", (
    "In which year was {0}?",
    "What year was {0}?",
), """
the first iPhone released | 2007
the first iPad released | 2010
the first Android phone released | 2008
the original PlayStation first released | 1994
Google founded | 1998
Facebook launched | 2004
YouTube founded | 2005
Wikipedia launched | 2001
Twitter launched | 2006
Apple founded | 1976
Microsoft founded | 1975
Intel founded | 1968
Nvidia founded | 1993
Netflix founded | 1997
the Linux kernel first released | 1991
the Java language first released | 1995
ChatGPT released to the public | 2022
the Bitcoin network launched | 2009
""")

_one_offs("technology", """
Which language runs natively inside web browsers? | JavaScript
Which markup language gives web pages their structure? | HTML
Which query language is used with relational databases? | SQL
Which company developed the C# programming language? | Microsoft
Which company created the Go programming language? | Google
Which company created the Kotlin programming language? | JetBrains
What file extension do Python source files use? | .py
Which keyboard shortcut undoes the last action on Windows? | Ctrl+Z
What is the binary number 101 in decimal? | 5
What is the largest number one unsigned byte can hold? | 255
Is a keyboard an input or an output device? | an input device
Which wireless standard connects headphones to phones over short distances? | Bluetooth
Which short-range technology lets phones pay by tapping a reader? | NFC
What is the process of finding and fixing errors in code called? | debugging
What is a step-by-step set of instructions for solving a problem called? | an algorithm
Which algorithm did Google originally use to rank web pages? | PageRank

Who created the Linux kernel? // Which programmer wrote the first Linux kernel? | Linus Torvalds
Who created the Git version control system? | Linus Torvalds
How many bits are in a byte? | 8
What is the smallest unit of data in a computer? | a bit
Which number system uses only the digits 0 and 1? | binary
What is the base of the hexadecimal number system? | 16
Which data structure follows last in, first out order? | a stack
Which data structure follows first in, first out order? | a queue
Which keyword defines a function in Python? | def
Which language is used to style the look of web pages? | CSS
What is the main circuit board of a computer called? | the motherboard
Which company originally developed the Java programming language? | Sun Microsystems
Which company owns the video site YouTube? | Google
Which company owns the photo app Instagram? | Meta
Which operating system has a penguin called Tux as its mascot? | Linux
What does a compiler translate source code into? | machine code
Who is often called the first computer programmer? | Ada Lovelace
Which mathematician proposed a famous test of machine intelligence? | Alan Turing
What is the general term for malicious software? | malware
What is a mistake in a computer program commonly called? | a bug
Which connector charges most modern Android phones? | USB-C
What do we call computing services delivered over the internet? | cloud computing
Which law predicts that transistor counts double about every two years? | Moore's law
What does a firewall protect a computer network from? | unauthorized access
What kind of memory loses its contents when the power is off? | volatile memory
Which company made the 4004, the first commercial microprocessor? | Intel
What is the name of Amazon's cloud computing platform? | Amazon Web Services
At which research lab was the Unix operating system developed? | Bell Labs
Which device forwards data packets between computer networks? | a router
What is the first page of a website usually called? | the home page
""")

# =================================================== arts ===================================================

_table("arts", "painting", (
    "Which artist painted {0}?",
    "Who is the painter of {0}?",
    "{0} was painted by which artist?",
), """
the Mona Lisa | Leonardo da Vinci
The Last Supper | Leonardo da Vinci
The Starry Night | Vincent van Gogh
the Sunflowers series | Vincent van Gogh
Guernica | Pablo Picasso
Les Demoiselles d'Avignon | Pablo Picasso
The Scream | Edvard Munch
Girl with a Pearl Earring | Johannes Vermeer
The Persistence of Memory | Salvador Dali
The Birth of Venus | Sandro Botticelli
The Night Watch | Rembrandt
the Water Lilies series | Claude Monet
Impression, Sunrise | Claude Monet
The Creation of Adam | Michelangelo
American Gothic | Grant Wood
Las Meninas | Diego Velazquez
The Garden of Earthly Delights | Hieronymus Bosch
The Son of Man | Rene Magritte
Nighthawks | Edward Hopper
The School of Athens | Raphael
The Arnolfini Portrait | Jan van Eyck
Liberty Leading the People | Eugene Delacroix
The Hay Wain | John Constable
The Fighting Temeraire | J. M. W. Turner
Campbell's Soup Cans | Andy Warhol
Luncheon of the Boating Party | Pierre-Auguste Renoir
A Sunday on La Grande Jatte | Georges Seurat
""")

_table("arts", "book", (
    "Who wrote the {0} {1}?",
    "Name the author of the {0} {1}.",
    "The {0} {1} was written by whom?",
), """
play | Romeo and Juliet | William Shakespeare
play | Hamlet | William Shakespeare
play | Macbeth | William Shakespeare
novel | Pride and Prejudice | Jane Austen
novel | Sense and Sensibility | Jane Austen
novel | 1984 | George Orwell
novella | Animal Farm | George Orwell
novel | War and Peace | Leo Tolstoy
novel | Anna Karenina | Leo Tolstoy
novel | Don Quixote | Miguel de Cervantes
epic poem | The Odyssey | Homer
epic poem | The Iliad | Homer
novel | Moby-Dick | Herman Melville
novel | Great Expectations | Charles Dickens
novel | Oliver Twist | Charles Dickens
novel | A Tale of Two Cities | Charles Dickens
novel | The Great Gatsby | F. Scott Fitzgerald
novel | To Kill a Mockingbird | Harper Lee
novel | Crime and Punishment | Fyodor Dostoevsky
novel | Frankenstein | Mary Shelley
novel | Dracula | Bram Stoker
novel | Jane Eyre | Charlotte Bronte
novel | Wuthering Heights | Emily Bronte
epic poem | The Divine Comedy | Dante Alighieri
novel | Les Miserables | Victor Hugo
novel | Adventures of Huckleberry Finn | Mark Twain
novella | The Old Man and the Sea | Ernest Hemingway
novel | The Catcher in the Rye | J. D. Salinger
novel | Brave New World | Aldous Huxley
novel | One Hundred Years of Solitude | Gabriel Garcia Marquez
novella | The Metamorphosis | Franz Kafka
novel | Madame Bovary | Gustave Flaubert
novella | Of Mice and Men | John Steinbeck
novel | The Grapes of Wrath | John Steinbeck
novel | Robinson Crusoe | Daniel Defoe
novel | Gulliver's Travels | Jonathan Swift
novel | Treasure Island | Robert Louis Stevenson
novel | The Hobbit | J. R. R. Tolkien
novel | The Lord of the Rings | J. R. R. Tolkien
novel | Beloved | Toni Morrison
novel | The Handmaid's Tale | Margaret Atwood
novel | Alice's Adventures in Wonderland | Lewis Carroll
play | Death of a Salesman | Arthur Miller
play | A Doll's House | Henrik Ibsen
play | Waiting for Godot | Samuel Beckett
play | Pygmalion | George Bernard Shaw
play | The Importance of Being Earnest | Oscar Wilde
play | Faust | Goethe
poem | The Raven | Edgar Allan Poe
poem | The Road Not Taken | Robert Frost
""")

_table("arts", "composition", (
    "Which composer wrote {0}?",
    "Who is the composer of {0}?",
    "Name the composer of {0}.",
), """
The Four Seasons | Antonio Vivaldi
The Magic Flute | Wolfgang Amadeus Mozart
The Marriage of Figaro | Wolfgang Amadeus Mozart
Eine kleine Nachtmusik | Wolfgang Amadeus Mozart
the Moonlight Sonata | Ludwig van Beethoven
Fur Elise | Ludwig van Beethoven
the ballet Swan Lake | Pyotr Ilyich Tchaikovsky
the ballet The Nutcracker | Pyotr Ilyich Tchaikovsky
the 1812 Overture | Pyotr Ilyich Tchaikovsky
Bolero | Maurice Ravel
The Rite of Spring | Igor Stravinsky
Clair de Lune | Claude Debussy
The Blue Danube waltz | Johann Strauss II
the oratorio Messiah | George Frideric Handel
Water Music | George Frideric Handel
the Brandenburg Concertos | Johann Sebastian Bach
The Well-Tempered Clavier | Johann Sebastian Bach
the opera Carmen | Georges Bizet
The Barber of Seville | Gioachino Rossini
La Traviata | Giuseppe Verdi
the opera Aida | Giuseppe Verdi
Madama Butterfly | Giacomo Puccini
The Planets suite | Gustav Holst
Ride of the Valkyries | Richard Wagner
Rhapsody in Blue | George Gershwin
Peter and the Wolf | Sergei Prokofiev
Canon in D | Johann Pachelbel
the New World Symphony | Antonin Dvorak
the Pomp and Circumstance marches | Edward Elgar
the Gymnopedies for piano | Erik Satie
""")

_table("arts", "instrument_family", (
    "To which instrument family does the {0} belong?",
    "In an orchestra, which section plays the {0}?",
), """
trumpet | brass
trombone | brass
tuba | brass
French horn | brass
flute | woodwind
clarinet | woodwind
oboe | woodwind
bassoon | woodwind
violin | strings
viola | strings
cello | strings
double bass | strings
harp | strings
timpani | percussion
xylophone | percussion
snare drum | percussion
""")

_table("arts", "string_count", (
    "How many strings does a standard {0} have?",
    "A standard {0} has how many strings?",
), """
violin | 4
viola | 4
cello | 4
double bass | 4
acoustic guitar | 6
ukulele | 4
bass guitar | 4
mandolin | 8
""")

_table("arts", "musician_instrument", (
    "Which instrument is {0} famous for playing?",
    "{0} is best known as a player of which instrument?",
    "Which musical instrument made {0} famous?",
), """
Jimi Hendrix | guitar
Eric Clapton | guitar
Louis Armstrong | trumpet
Miles Davis | trumpet
Dizzy Gillespie | trumpet
Yo-Yo Ma | cello
Jacqueline du Pre | cello
Ravi Shankar | sitar
Charlie Parker | saxophone
John Coltrane | saxophone
Itzhak Perlman | violin
Niccolo Paganini | violin
Stephane Grappelli | violin
Lang Lang | piano
Vladimir Horowitz | piano
Frederic Chopin | piano
Ringo Starr | drums
Keith Moon | drums
Buddy Rich | drums
Jaco Pastorius | bass guitar
Benny Goodman | clarinet
""")

_table("arts", "film_director", (
    "Who directed the film {0}?",
    "Which director made the movie {0}?",
    "The film {0} was directed by whom?",
), """
Jaws | Steven Spielberg
E.T. the Extra-Terrestrial | Steven Spielberg
Jurassic Park | Steven Spielberg
Schindler's List | Steven Spielberg
Psycho | Alfred Hitchcock
Vertigo | Alfred Hitchcock
The Godfather | Francis Ford Coppola
Apocalypse Now | Francis Ford Coppola
Avatar | James Cameron
Pulp Fiction | Quentin Tarantino
Reservoir Dogs | Quentin Tarantino
Star Wars of 1977 | George Lucas
2001: A Space Odyssey | Stanley Kubrick
The Shining | Stanley Kubrick
Citizen Kane | Orson Welles
Inception | Christopher Nolan
The Dark Knight | Christopher Nolan
Spirited Away | Hayao Miyazaki
Taxi Driver | Martin Scorsese
Goodfellas | Martin Scorsese
Raging Bull | Martin Scorsese
Alien | Ridley Scott
Forrest Gump | Robert Zemeckis
Back to the Future | Robert Zemeckis
Seven Samurai | Akira Kurosawa
La La Land | Damien Chazelle
The Matrix | the Wachowskis
Lawrence of Arabia | David Lean
Pan's Labyrinth | Guillermo del Toro
The Grand Budapest Hotel | Wes Anderson
""")

_one_offs("arts", """
Which art movement is Salvador Dali associated with? | Surrealism
Claude Monet was a founder of which art movement? | Impressionism
Pablo Picasso and Georges Braque developed which art style? | Cubism
Andy Warhol was a leading figure of which art movement? | Pop Art
In which museum is the Mona Lisa displayed? | the Louvre
Which New York museum is nicknamed the Met? | Metropolitan Museum of Art
How many symphonies did Beethoven complete? | 9
Which composer kept writing music after becoming deaf? | Ludwig van Beethoven
Which Shakespeare play contains the line "To be or not to be"? | Hamlet
What is a painting of arranged objects such as fruit called? | a still life
What is a poem of fourteen lines called? | a sonnet
What is a three-line Japanese poem of seventeen syllables called? | a haiku
How many lines does a limerick have? | 5
What is the highest female singing voice? | soprano
What is the lowest male singing voice? | bass
Which musical term means gradually getting louder? | crescendo
Which ballet features the Sugar Plum Fairy? | The Nutcracker
In which city is the opera house La Scala? | Milan
Which band's members were John, Paul, George and Ringo? | the Beatles
Who is known as the King of Pop? | Michael Jackson
Who is known as the King of Rock and Roll? | Elvis Presley
What was the name of Shakespeare's theater in London? | the Globe Theatre
Which art form uses small pieces of colored glass or stone? | mosaic
Which fictional detective lived at 221B Baker Street? | Sherlock Holmes
Who created the detective Sherlock Holmes? | Arthur Conan Doyle
Who created the detective Hercule Poirot? | Agatha Christie
Who wrote the Harry Potter series of books? | J. K. Rowling
Which sculptor created The Thinker? | Auguste Rodin
Which Dutch painter cut off part of his own ear? | Vincent van Gogh
How many keys does a standard piano have? | 88
What is a solo song in an opera called? | an aria
What is a group of four musicians called? | a quartet
What is the stand that holds a painter's canvas called? | an easel
Which dance style was born in Buenos Aires and Montevideo? | the tango
Which Spanish city has the Guggenheim museum designed by Frank Gehry? | Bilbao
Which Disney film features the song "Let It Go"? | Frozen
Which animation studio made the film Toy Story? | Pixar
Which orchestral instrument has 47 strings and seven pedals? | the harp
What is the name of Japan's classical masked dance drama? | Noh
""")

# ================================================== health ==================================================

_table("health", "organ_function", (
    "Which organ {0}?",
    "What organ in the human body {0}?",
    "Name the organ that {0}.",
), """
pumps blood around the body | the heart
filters the blood to produce urine | the kidneys
produces the hormone insulin | the pancreas
produces bile to help digest fats | the liver
stores bile before it reaches the intestine | the gallbladder
takes in oxygen and removes carbon dioxide | the lungs
absorbs most of the nutrients from digested food | the small intestine
absorbs water from undigested food | the large intestine
stores urine until it leaves the body | the bladder
carries swallowed food from the throat to the stomach | the esophagus
breaks down food with strong acid | the stomach
removes old red blood cells from circulation | the spleen
controls thought, memory and movement | the brain
""")

_table("health", "disease_site", (
    "Which part of the body does {0} affect?",
    "{0} is a condition of which part of the body?",
    "Which organ or body part is affected by {0}?",
), """
hepatitis | the liver
cirrhosis | the liver
pneumonia | the lungs
a cataract | the eye
glaucoma | the eye
conjunctivitis | the eye
gingivitis | the gums
arthritis | the joints
osteoporosis | the bones
eczema | the skin
psoriasis | the skin
tonsillitis | the tonsils
meningitis | the meninges
gastritis | the stomach
bronchitis | the bronchi
laryngitis | the larynx
appendicitis | the appendix
cystitis | the bladder
nephritis | the kidneys
sinusitis | the sinuses
pancreatitis | the pancreas
epilepsy | the brain
tendinitis | the tendons
colitis | the colon
""")

_table("health", "vitamin_name", (
    "Which vitamin is also known as {0}?",
    "{0} is another name for which vitamin?",
    "What vitamin is called {0}?",
), """
thiamine | vitamin B1
riboflavin | vitamin B2
niacin | vitamin B3
pantothenic acid | vitamin B5
pyridoxine | vitamin B6
biotin | vitamin B7
folic acid | vitamin B9
cobalamin | vitamin B12
ascorbic acid | vitamin C
retinol | vitamin A
calciferol | vitamin D
tocopherol | vitamin E
phylloquinone | vitamin K
""")

_table("health", "anatomy_name", (
    "What is the common name for the {0}?",
    "In everyday language, what is the {0} called?",
    ("What is the medical name for the {1}?", 0),
), """
femur | thighbone
patella | kneecap
clavicle | collarbone
scapula | shoulder blade
sternum | breastbone
mandible | lower jawbone
tibia | shinbone
larynx | voice box
trachea | windpipe
vertebral column | backbone
epidermis | outer layer of skin
""")

_table("health", "medical_term", (
    "What is the medical term for {0}?",
    "Doctors call {0} by which medical name?",
    ("What is {1} in everyday language?", 0),
), """
high blood pressure | hypertension
low blood sugar | hypoglycemia
short-sightedness | myopia
long-sightedness | hyperopia
hives | urticaria
a nosebleed | epistaxis
a heart attack | myocardial infarction
fainting | syncope
itching | pruritus
bad breath | halitosis
hair loss | alopecia
a bruise | a contusion
difficulty swallowing | dysphagia
""")

_table("health", "specialist", (
    "What kind of doctor specializes in {0}?",
    "Which medical specialist treats {0}?",
    "A doctor who specializes in {0} is called what?",
), """
the heart | a cardiologist
skin conditions | a dermatologist
the health of children | a pediatrician
eye diseases | an ophthalmologist
kidney disease | a nephrologist
cancer | an oncologist
disorders of the nervous system | a neurologist
the feet | a podiatrist
mental illness | a psychiatrist
the female reproductive system | a gynecologist
the care of elderly people | a geriatrician
blood disorders | a hematologist
the digestive system | a gastroenterologist
hormone disorders | an endocrinologist
allergies | an allergist
ear, nose and throat problems | an otolaryngologist
lung disease | a pulmonologist
""")

_table("health", "health_acronym", _ACRONYM_TEMPLATES, """
HIV | human immunodeficiency virus
AIDS | acquired immunodeficiency syndrome
BMI | body mass index
CPR | cardiopulmonary resuscitation
ECG | electrocardiogram
EEG | electroencephalogram
MRI | magnetic resonance imaging
CT | computed tomography
ICU | intensive care unit
ADHD | attention deficit hyperactivity disorder
PTSD | post-traumatic stress disorder
COPD | chronic obstructive pulmonary disease
OCD | obsessive-compulsive disorder
DVT | deep vein thrombosis
LDL | low-density lipoprotein
GP | general practitioner
""")

_table("health", "body_system", (
    "Which body system does the {0} belong to?",
    "The {0} is part of which body system?",
), """
heart | the circulatory system
aorta | the circulatory system
lungs | the respiratory system
trachea | the respiratory system
diaphragm | the respiratory system
stomach | the digestive system
esophagus | the digestive system
small intestine | the digestive system
kidneys | the urinary system
bladder | the urinary system
brain | the nervous system
spinal cord | the nervous system
thyroid gland | the endocrine system
pituitary gland | the endocrine system
femur | the skeletal system
""")

_table("health", "pathogen", (
    "What type of microbe causes {0}?",
    "Is {0} caused by a virus, bacterium, fungus or parasite?",
    "{0} is caused by which kind of pathogen?",
), """
influenza | a virus
measles | a virus
chickenpox | a virus
rabies | a virus
polio | a virus
mumps | a virus
COVID-19 | a virus
tuberculosis | a bacterium
cholera | a bacterium
tetanus | a bacterium
typhoid fever | a bacterium
whooping cough | a bacterium
strep throat | a bacterium
Lyme disease | a bacterium
athlete's foot | a fungus
ringworm | a fungus
oral thrush | a fungus
malaria | a parasite
""")

_one_offs("health", """
Which vitamin does the skin make when exposed to sunlight? | vitamin D
A lack of which vitamin causes scurvy? | vitamin C
Which vitamin is important for seeing in dim light? | vitamin A
Which vitamin helps the blood to clot? | vitamin K
A deficiency of which vitamin causes rickets in children? | vitamin D
A deficiency of which vitamin causes beriberi? | vitamin B1
Which mineral do red blood cells need to carry oxygen? | iron
Which mineral is essential for strong bones and teeth? | calcium
A lack of iodine can cause swelling of which gland? | the thyroid
Which nutrient is the body's main source of energy? | carbohydrates
Which nutrient is needed to build and repair muscles? | protein
Which part of plant foods aids digestion but is not digested? | dietary fiber
How many calories are in one gram of fat? | about 9
How many calories are in one gram of protein? | about 4
Roughly what percentage of an adult's body is water? | about 60 percent
How many bones are in the adult human body? // An adult human skeleton has how many bones? | 206
How many teeth does a full adult set have? | 32
How many chambers does the human heart have? | 4
What is the longest bone in the human body? | the femur
What is the smallest bone in the human body? | the stapes
What is the largest organ of the human body? | the skin
What is the largest internal organ of the human body? | the liver
What is normal human body temperature in degrees Celsius? | about 37 degrees Celsius
What is a normal resting heart rate for an adult? | 60-100 beats per minute
Which blood type is known as the universal donor? | O negative
Which blood type is known as the universal recipient? | AB positive
Which blood cells help the body fight infection? | white blood cells
Which blood cells carry oxygen around the body? | red blood cells
Which protein in red blood cells carries oxygen? | hemoglobin
Which tiny cell fragments help blood to clot? | platelets
Which tissue connects muscles to bones? | tendons
Which tissue connects one bone to another at a joint? | ligaments
What is the colored part of the eye called? | the iris
What is the dark opening in the center of the eye called? | the pupil
Which hormone lowers the level of sugar in the blood? | insulin
Which hormone helps to regulate the sleep cycle? | melatonin
Which hormone triggers the fight-or-flight response? | adrenaline
What does a sphygmomanometer measure? | blood pressure
Which disease occurs when the body cannot make or use insulin properly? | diabetes
Which insect spreads malaria? // Malaria is passed on by the bite of which insect? | the mosquito
Which disease was declared eradicated worldwide in 1980? | smallpox
Who developed the first smallpox vaccine? | Edward Jenner
Who developed the first successful polio vaccine? | Jonas Salk
Who is regarded as the founder of modern nursing? | Florence Nightingale
Which ancient Greek physician is called the father of medicine? | Hippocrates
Which UN agency is responsible for international public health? | the World Health Organization
How many minutes of moderate exercise a week does WHO recommend for adults? | at least 150 minutes
How many hours of sleep do most adults need each night? | 7 to 9 hours
Which gland in the neck produces hormones that control metabolism? | the thyroid gland
""")

# ================================================== sports ==================================================

_table("sports", "players_per_side", (
    "How many players does each team have in {0}?",
    "How many players per side take part in a game of {0}?",
    "In {0}, how many players does each team field at once?",
), """
soccer | 11
basketball | 5
volleyball | 6
beach volleyball | 2
ice hockey | 6
rugby union | 15
rugby league | 13
baseball | 9
cricket | 11
water polo | 7
netball | 7
handball | 7
American football | 11
field hockey | 11
polo | 4
Australian rules football | 18
Gaelic football | 15
ultimate frisbee | 7
curling | 4
""")

_table("sports", "summer_olympics", (
    "Which city hosted the {0} Summer Olympics?",
    "Where were the {0} Summer Olympic Games held?",
    "Name the host city of the {0} Summer Olympics.",
), """
2024 | Paris
2016 | Rio de Janeiro
2012 | London
2008 | Beijing
2004 | Athens
2000 | Sydney
1996 | Atlanta
1992 | Barcelona
1988 | Seoul
1984 | Los Angeles
1980 | Moscow
1976 | Montreal
1972 | Munich
1968 | Mexico City
1964 | Tokyo
1960 | Rome
1936 | Berlin
1896 | Athens
""")

# Cities that hosted the Summer Games exactly once: the reverse question has one answer.
_table("sports", "summer_olympics", (
    ("In which year did {1} host the Summer Olympics?", 0),
), """
2016 | Rio de Janeiro
2008 | Beijing
2000 | Sydney
1996 | Atlanta
1992 | Barcelona
1988 | Seoul
1980 | Moscow
1976 | Montreal
1972 | Munich
1968 | Mexico City
1960 | Rome
1936 | Berlin
""")

_table("sports", "winter_olympics", (
    "Which city hosted the {0} Winter Olympics?",
    "Where were the {0} Winter Olympic Games held?",
    ("In which year did {1} host the Winter Olympics?", 0),
), """
2022 | Beijing
2018 | Pyeongchang
2014 | Sochi
2010 | Vancouver
2006 | Turin
2002 | Salt Lake City
1998 | Nagano
1994 | Lillehammer
1992 | Albertville
1988 | Calgary
""")

_table("sports", "world_cup_winner", (
    "Which country won the {0} FIFA World Cup?",
    "Who won the men's football World Cup in {0}?",
    "Which national team were champions of the {0} FIFA World Cup?",
), """
2022 | Argentina
2018 | France
2014 | Germany
2010 | Spain
2006 | Italy
2002 | Brazil
1998 | France
1994 | Brazil
1990 | West Germany
1986 | Argentina
1982 | Italy
1978 | Argentina
1974 | West Germany
1970 | Brazil
1966 | England
1930 | Uruguay
""")

_table("sports", "world_cup_host", (
    "Which country hosted the {0} FIFA World Cup?",
    "Where was the {0} FIFA World Cup played?",
), """
2022 | Qatar
2018 | Russia
2014 | Brazil
2010 | South Africa
2006 | Germany
2002 | South Korea and Japan
1998 | France
1994 | the United States
1990 | Italy
1986 | Mexico
1966 | England
1930 | Uruguay
""")

_table("sports", "athlete", (
    "Which sport is {0} famous for?",
    "{0} became a star in which sport?",
    "In which sport did {0} become famous?",
), """
Usain Bolt | sprinting
Carl Lewis | athletics
Jesse Owens | athletics
Sebastian Coe | middle-distance running
Eliud Kipchoge | marathon running
Sergey Bubka | pole vault
Michael Phelps | swimming
Mark Spitz | swimming
Katie Ledecky | swimming
Serena Williams | tennis
Roger Federer | tennis
Rafael Nadal | tennis
Novak Djokovic | tennis
Martina Navratilova | tennis
Steffi Graf | tennis
Rod Laver | tennis
Lionel Messi | soccer
Cristiano Ronaldo | soccer
Pele | soccer
Diego Maradona | soccer
Zinedine Zidane | soccer
Michael Jordan | basketball
LeBron James | basketball
Kobe Bryant | basketball
Larry Bird | basketball
Tiger Woods | golf
Jack Nicklaus | golf
Wayne Gretzky | ice hockey
Babe Ruth | baseball
Jackie Robinson | baseball
Muhammad Ali | boxing
Mike Tyson | boxing
Sachin Tendulkar | cricket
Don Bradman | cricket
Simone Biles | gymnastics
Nadia Comaneci | gymnastics
Lewis Hamilton | Formula One
Michael Schumacher | Formula One
Ayrton Senna | Formula One
Tom Brady | American football
Joe Montana | American football
Shaun White | snowboarding
Lindsey Vonn | alpine skiing
Eddy Merckx | cycling
""")

_table("sports", "team_sport", (
    "Which sport is played by {0}?",
    "In which sport do {0} compete?",
    "{0} play which sport?",
), """
the New York Yankees | baseball
the Boston Red Sox | baseball
the Chicago Cubs | baseball
the Los Angeles Lakers | basketball
the Chicago Bulls | basketball
the Boston Celtics | basketball
the Golden State Warriors | basketball
the Harlem Globetrotters | basketball
Manchester United | soccer
Real Madrid | soccer
FC Barcelona | soccer
Liverpool FC | soccer
Bayern Munich | soccer
Juventus | soccer
AC Milan | soccer
the Dallas Cowboys | American football
the Green Bay Packers | American football
the New England Patriots | American football
the Pittsburgh Steelers | American football
the Toronto Maple Leafs | ice hockey
the Montreal Canadiens | ice hockey
the Detroit Red Wings | ice hockey
the All Blacks | rugby union
""")

_table("sports", "event_sport", (
    "Which sport is {0} associated with?",
    "Which sport does {0} belong to?",
    "Fans of which sport follow {0}?",
), """
Wimbledon | tennis
the French Open | tennis
the Davis Cup | tennis
the Tour de France | cycling
the Giro d'Italia | cycling
the Super Bowl | American football
the Ashes | cricket
the Ryder Cup | golf
the Solheim Cup | golf
the Masters Tournament at Augusta | golf
the America's Cup | sailing
the Six Nations Championship | rugby union
the Calcutta Cup | rugby union
the Stanley Cup | ice hockey
the World Series | baseball
the Grand National | horse racing
the Kentucky Derby | horse racing
the Monaco Grand Prix | Formula One
the Indianapolis 500 | IndyCar racing
the Daytona 500 | stock car racing
the NBA Finals | basketball
the Copa America | soccer
the UEFA Champions League | soccer
the Ballon d'Or | soccer
""")

_table("sports", "term_sport", (
    'In which sport would you hear the term "{0}"?',
    'The term "{0}" comes from which sport?',
    'Which sport uses the term "{0}"?',
), """
slam dunk | basketball
three-pointer | basketball
hole in one | golf
mulligan | golf
bogey | golf
home run | baseball
stolen base | baseball
touchdown | American football
quarterback | American football
maiden over | cricket
googly | cricket
leg before wicket | cricket
scrum | rugby
icing | ice hockey
slap shot | ice hockey
double fault | tennis
shuttlecock | badminton
ippon | judo
epee | fencing
butterfly stroke | swimming
breaststroke | swimming
pommel horse | gymnastics
pit stop | motor racing
penalty corner | field hockey
strike and spare | ten-pin bowling
""")

_one_offs("sports", """
How long is a marathon in kilometers? // What is the official distance of a marathon race? | 42.195 kilometers
How many rings are on the Olympic flag? | 5
How many holes are played in a standard round of golf? | 18
How many points is a touchdown worth in American football? | 6
How many points does a basketball shot from beyond the arc score? | 3
How long is a regular soccer match, not counting stoppage time? | 90 minutes
How many periods are there in an ice hockey game? | 3
How many innings are in a standard baseball game? | 9
How many balls make up an over in cricket? | 6
How many points is a try worth in rugby union? | 5
How long is an Olympic-size swimming pool? | 50 meters
How high is a regulation basketball hoop? | 10 feet
What is the maximum break in snooker? | 147
How many Grand Slam tournaments are there in tennis each year? | 4
Which country has won the most men's FIFA World Cups? | Brazil
In which country did the martial art judo originate? | Japan
In which country did the sport of cricket originate? | England
Which swimmer has won the most Olympic gold medals? | Michael Phelps
Which boxer called himself "The Greatest"? | Muhammad Ali
What color jersey does the Tour de France leader wear? | yellow
Which Grand Slam tennis tournament is played on clay? | the French Open
On what surface is Wimbledon played? | grass
How often are the Summer Olympic Games normally held? | every four years
What is a score of zero called in tennis? | love
What is a score of 40-40 called in tennis? | deuce
In which city is the Maracana football stadium? | Rio de Janeiro
In which city is Wembley Stadium? | London
How many minutes does a rugby union match last? | 80
In golf, what is a score of one under par on a hole? | a birdie
What is a score of two under par on a golf hole called? | an eagle
How many strokes under par is an albatross in golf? | 3
What is the shortest sprint race at the Olympics? | 100 meters
Who invented basketball in 1891? | James Naismith
Which race combines swimming, cycling and running? | triathlon
Which athletics event is made up of ten track and field disciplines? | decathlon
How many events make up the heptathlon? | 7
What is the NBA championship trophy called? | the Larry O'Brien Trophy
Which trophy goes to the winner of the Super Bowl? | the Vince Lombardi Trophy
How many minutes long is each quarter of an NBA game? | 12
What is the most sets played in a men's Grand Slam singles match? | 5
""")

# ================================================= business =================================================

_table("business", "business_acronym", _ACRONYM_TEMPLATES, """
GDP | gross domestic product
GNP | gross national product
CEO | chief executive officer
CFO | chief financial officer
COO | chief operating officer
IPO | initial public offering
ROI | return on investment
VAT | value-added tax
HR | human resources
LLC | limited liability company
PLC | public limited company
NYSE | New York Stock Exchange
KPI | key performance indicator
ETF | exchange-traded fund
CPI | consumer price index
IMF | International Monetary Fund
WTO | World Trade Organization
ECB | European Central Bank
FDI | foreign direct investment
EPS | earnings per share
CRM | customer relationship management
ERP | enterprise resource planning
ATM | automated teller machine
SEC | Securities and Exchange Commission
APR | annual percentage rate
B2B | business-to-business
B2C | business-to-consumer
P&L | profit and loss
M&A | mergers and acquisitions
R&D | research and development
SME | small and medium-sized enterprise
ESG | environmental, social and governance
""")

_table("business", "headquarters", (
    "In which city is {0} headquartered?",
    "Where are the headquarters of {0}?",
    "Which city is home to the head office of {0}?",
), """
Coca-Cola | Atlanta
Delta Air Lines | Atlanta
Walmart | Bentonville
Volkswagen | Wolfsburg
BMW | Munich
Siemens | Munich
Nike | Beaverton
Starbucks | Seattle
McDonald's | Chicago
Ford | Dearborn
General Motors | Detroit
Berkshire Hathaway | Omaha
Lego | Billund
Heineken | Amsterdam
Philips | Amsterdam
ING | Amsterdam
Adidas | Herzogenaurach
Puma | Herzogenaurach
Ferrari | Maranello
Alibaba | Hangzhou
Rolex | Geneva
Nestle | Vevey
Procter & Gamble | Cincinnati
Mercedes-Benz | Stuttgart
Porsche | Stuttgart
Audi | Ingolstadt
Carlsberg | Copenhagen
H&M | Stockholm
FedEx | Memphis
Volvo Cars | Gothenburg
Tata Group | Mumbai
Deutsche Bank | Frankfurt
HSBC | London
Hyundai | Seoul
""")

_table("business", "stock_index", (
    "{0} is a stock market index for which country?",
    "Which country's shares are tracked by {0}?",
    "Name the country whose stock market is measured by {0}.",
), """
the Dow Jones Industrial Average | the United States
the S&P 500 | the United States
the FTSE 100 | the United Kingdom
the Nikkei 225 | Japan
the DAX | Germany
the CAC 40 | France
the Sensex | India
the KOSPI | South Korea
the IBEX 35 | Spain
the FTSE MIB | Italy
the ASX 200 | Australia
the AEX | the Netherlands
the SMI | Switzerland
the S&P/TSX Composite | Canada
the Bovespa | Brazil
""")

_table("business", "business_person", (
    "Which company is {0} best known for?",
    "Name the company most closely linked with {0}.",
    "{0} is famous in business for which company?",
), """
Warren Buffett | Berkshire Hathaway
Jeff Bezos | Amazon
Jack Ma | Alibaba
Sam Walton | Walmart
Ray Kroc | McDonald's
Ingvar Kamprad | IKEA
Phil Knight | Nike
Richard Branson | Virgin Group
Amancio Ortega | Zara
Bernard Arnault | LVMH
Indra Nooyi | PepsiCo
Akio Morita | Sony
Howard Schultz | Starbucks
Adi Dassler | Adidas
Rudolf Dassler | Puma
Larry Fink | BlackRock
Mukesh Ambani | Reliance Industries
Masayoshi Son | SoftBank
Karl Albrecht | Aldi
Dietrich Mateschitz | Red Bull
""")

_table("business", "tycoon_industry", (
    "In which industry did {0} make a fortune?",
    "{0} grew rich in which industry?",
), """
Andrew Carnegie | steel
John D. Rockefeller | oil
Cornelius Vanderbilt | railroads and shipping
J. P. Morgan | banking
Henry Ford | automobiles
Conrad Hilton | hotels
Rupert Murdoch | news media
Coco Chanel | fashion
Estee Lauder | cosmetics
Ted Turner | cable television
""")

_table("business", "economic_term", (
    "What is the term for {0}?",
    "What do economists call {0}?",
    "Which business term means {0}?",
), """
a general rise in prices over time | inflation
a general fall in prices over time | deflation
a market with only one seller | a monopoly
a market dominated by a few large sellers | an oligopoly
a share of company profits paid to shareholders | a dividend
a market in which share prices are rising | a bull market
a market in which share prices are falling | a bear market
a tax charged on imported goods | a tariff
a company's total income from sales | revenue
a person who starts and runs a new business | an entrepreneur
the point where total revenue equals total costs | the break-even point
a license to run a business under another firm's brand | a franchise
a legal right protecting an invention | a patent
a registered sign that identifies a brand | a trademark
money a business owes to others | liabilities
things of value that a business owns | assets
a statement of assets, liabilities and equity | a balance sheet
a loan used to buy a house | a mortgage
the price paid for borrowing money | interest
a unit of ownership in a company | a share
selling goods and services to other countries | exporting
a group of firms that secretly agree to fix prices | a cartel
a significant decline in economic activity lasting months | a recession
the gap when a government spends more than it collects | a budget deficit
a firm's earnings after all costs are subtracted | net profit
the price of one currency in terms of another | the exchange rate
""")

_table("business", "slogan", (
    'Which company uses the slogan "{0}"?',
    'The advertising slogan "{0}" belongs to which brand?',
), """
Just Do It | Nike
I'm Lovin' It | McDonald's
Impossible Is Nothing | Adidas
The Ultimate Driving Machine | BMW
Because You're Worth It | L'Oreal
Finger Lickin' Good | KFC
Have It Your Way | Burger King
Every Little Helps | Tesco
Taste the Rainbow | Skittles
Open Happiness | Coca-Cola
The Best a Man Can Get | Gillette
Eat Fresh | Subway
Let's Go Places | Toyota
Breakfast of Champions | Wheaties
Think Small | Volkswagen
Don't Leave Home Without It | American Express
Vorsprung durch Technik | Audi
Maybe She's Born with It | Maybelline
""")

_table("business", "logo", (
    "Which company has a logo showing {0}?",
    "Which brand is known for a logo of {0}?",
), """
a swoosh | Nike
golden arches | McDonald's
three parallel stripes | Adidas
a twin-tailed siren | Starbucks
a three-pointed star in a circle | Mercedes-Benz
four interlocking rings | Audi
a green crocodile | Lacoste
a charging bull on a black shield | Lamborghini
""")

_one_offs("business", """
Who wrote The Wealth of Nations in 1776? // Which economist wrote The Wealth of Nations? | Adam Smith
Which economist wrote The General Theory of Employment, Interest and Money? | John Maynard Keynes
On which street is the New York Stock Exchange located? | Wall Street
What is the central bank of the United States called? | the Federal Reserve
Which bank sets interest rates in the United Kingdom? | the Bank of England
In which city is the European Central Bank based? | Frankfurt
Which currency is managed by the European Central Bank? | the euro
Which drink did pharmacist John Pemberton create in 1886? | Coca-Cola
Which online retailer began by selling books in 1995? | Amazon
Which Swedish company sells flat-pack furniture worldwide? | IKEA
Which Danish company makes the plastic toy bricks called Lego? | the Lego Group
Which fast-food chain did Colonel Harland Sanders found? | KFC
Which investor is known as the Oracle of Omaha? | Warren Buffett
Which company owns the fashion brands Zara and Massimo Dutti? | Inditex
What is a business that sells goods directly to consumers called? | a retailer
What is a company that exists to own shares in other companies? | a holding company
What is it called when two companies combine into one? | a merger
What document sets out a new company's goals and finances? | a business plan
What yearly document reports a company's results to shareholders? | the annual report
What is the annual meeting of business leaders in Davos called? | the World Economic Forum
What is a loan issued by a government or company to investors called? | a bond
What is the total value of a company's shares called? | market capitalization
Which document lists a firm's revenue and expenses over a period? | the income statement
What is money paid to use a patent or brand called? | a royalty
""")


# ---------------------------------------------------------------------------------------------------------
# Assembly.
# ---------------------------------------------------------------------------------------------------------

def _clean(text: str) -> str:
    text = " ".join(text.split())
    return text[:1].upper() + text[1:]


def _rows(block: str) -> list[list[str]]:
    return [[field.strip() for field in line.split("|")] for line in block.strip().splitlines() if line.strip()]


@lru_cache(maxsize=1)
def _build() -> tuple[tuple[Question, ...], dict[str, str]]:
    questions: list[Question] = []
    facts: dict[str, str] = {}

    def add(text: str, answer: str, topic: str, fact: str) -> None:
        text = _clean(text)
        if text in facts:
            raise ValueError(f"duplicate question text: {text!r}")
        facts[text] = fact
        questions.append(Question(text=text, answer=" ".join(answer.split()), topic=topic))

    for topic, group, templates, block in _TABLES:
        for fields in _rows(block):
            for template in templates:
                pattern, answer_index = (template, -1) if isinstance(template, str) else template
                add(pattern.format(*fields), fields[answer_index], topic, f"{group}:{fields[0]}")
    for topic, block in _ONE_OFFS:
        for fields in _rows(block):
            phrasings, answer = fields[0].split("//"), fields[1]
            for phrasing in phrasings:
                add(phrasing, answer, topic, f"{topic}:{_clean(phrasings[0])}")

    questions.sort(key=lambda q: (TOPICS.index(q.topic), q.text.lower(), q.text))
    return tuple(questions), facts


def all_questions() -> list[Question]:
    """Every question, sorted by topic (in TOPICS order) and then text; texts are unique."""
    return list(_build()[0])


def fact_key(question: Question) -> str:
    """The fact a question asks about; questions not from this corpus are each their own fact."""
    return _build()[1].get(question.text, f"external:{question.text}")


def split(questions: list[Question], heldout_fraction: float = 0.15,
          seed: int = 0) -> tuple[list[Question], list[Question]]:
    """(train, held_out): whole facts go to one side, about `heldout_fraction` of each topic is held out."""
    if not 0.0 <= heldout_fraction < 1.0:
        raise ValueError("heldout_fraction must be in [0, 1)")
    sizes: dict[str, int] = defaultdict(int)
    facts_by_topic: dict[str, set[str]] = defaultdict(set)
    for question in questions:
        key = fact_key(question)
        sizes[key] += 1
        facts_by_topic[question.topic].add(key)
    rng = random.Random(seed)
    held: set[str] = set()
    for topic in sorted(facts_by_topic):
        keys = sorted(facts_by_topic[topic])
        rng.shuffle(keys)
        target = heldout_fraction * sum(sizes[key] for key in keys)
        taken = 0
        for key in (keys[:-1] if len(keys) > 1 else keys):  # never hold out every fact of a topic
            if taken >= target or heldout_fraction == 0.0:
                break
            held.add(key)
            taken += sizes[key]
    train = [q for q in questions if fact_key(q) not in held]
    heldout = [q for q in questions if fact_key(q) in held]
    return train, heldout


def spelling_pairs(questions: Iterable[Question | str], seed: int, clean_fraction: float = 0.2,
                   copies: int = 1) -> list[tuple[str, str]]:
    """(input, target) pairs for the spelling adapter: `copies` per question, differently corrupted.

    `questions` may hold Question objects or plain strings. round(clean_fraction * total) of the pairs,
    chosen at random, keep the clean question as input, so the model learns to leave it unchanged.
    """
    if not 0.0 <= clean_fraction <= 1.0:
        raise ValueError("clean_fraction must be in [0, 1]")
    rng = random.Random(seed)
    texts = [q.text if isinstance(q, Question) else str(q) for q in questions]
    slots = [text for text in texts for _ in range(copies)]
    clean = set(rng.sample(range(len(slots)), round(clean_fraction * len(slots))))
    pairs: list[tuple[str, str]] = []
    seen: set[tuple[str, str]] = set()
    for index, text in enumerate(slots):
        if index in clean:
            pairs.append((text, text))
            continue
        noisy = corrupt(text, rng)
        for _ in range(5):  # copies of one question should differ from each other
            if (noisy, text) not in seen:
                break
            noisy = corrupt(text, rng)
        seen.add((noisy, text))
        pairs.append((noisy, text))
    return pairs


def main() -> None:
    questions = all_questions()
    train, heldout = split(questions)
    print(f"{'topic':<12}{'train':>7}{'held':>6}{'total':>7}{'facts':>7}")
    for topic in TOPICS:
        n_train = sum(q.topic == topic for q in train)
        n_held = sum(q.topic == topic for q in heldout)
        n_facts = len({fact_key(q) for q in questions if q.topic == topic})
        print(f"{topic:<12}{n_train:>7}{n_held:>6}{n_train + n_held:>7}{n_facts:>7}")
    print(f"{'all':<12}{len(train):>7}{len(heldout):>6}{len(questions):>7}"
          f"{len({fact_key(q) for q in questions}):>7}")
    print("\nSample corruptions (seed 0):")
    rng = random.Random(0)
    for question in rng.sample(questions, 10):
        noisy = corrupt(question.text, rng)
        print(f"  {question.text}\n  -> {noisy}   (CER {cer(noisy, question.text):.2f})")


if __name__ == "__main__":
    main()
